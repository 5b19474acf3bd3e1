#!/usr/bin/env bash
# Runs the test binary of an existing build on a machine with a GPU (the lent GPU machine has no
# -dev packages, so build elsewhere and carry build/). Fails if no GPU is visible, because the
# point of this script is to run the GPU tests rather than skip them.
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${HASTE_BUILD_DIR:-build}
source scripts/gpu_env.sh
"$build_dir/tools/haste/haste" device | tee /dev/stderr | grep -q "^GPU 0:" ||
  { echo "gpu_test: no GPU visible" >&2; exit 1; }
"$build_dir/tests/haste_tests" --gtest_brief=1 "$@"

# HASTE_GPU_SANITIZE=1 also runs the CUDA kernel tests on small shapes (g = 8, 32 and the g = 1
# baseline; the fused kernel at g = 8 and 32) under compute-sanitizer's memcheck and racecheck; a
# report fails the script.
if [ -n "${HASTE_GPU_SANITIZE:-}" ]; then
  small='*GroupSharedKernels.*/0:*GroupSharedKernels.*/3:*GroupSharedKernels.*/8'
  small+=':*GroupSharedFusedTrain.*/0:*GroupSharedFusedTrain.*/4'
  for tool in memcheck racecheck; do
    compute-sanitizer --tool "$tool" --error-exitcode 1 \
      "$build_dir/tests/haste_tests" --gtest_brief=1 --gtest_filter="$small"
  done
fi
