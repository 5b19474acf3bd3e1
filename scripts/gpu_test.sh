#!/usr/bin/env bash
# Runs the test binary of an existing build on a machine with a GPU (the lent GPU machine has no
# -dev packages, so build elsewhere and carry build/). Fails if no GPU is visible, because the
# point of this script is to run the GPU tests rather than skip them.
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${HASTE_BUILD_DIR:-build}
"$build_dir/tools/haste/haste" device | tee /dev/stderr | grep -q "^GPU 0:" ||
  { echo "gpu_test: no GPU visible" >&2; exit 1; }
"$build_dir/tests/haste_tests" --gtest_brief=1 "$@"
