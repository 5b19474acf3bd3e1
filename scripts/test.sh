#!/usr/bin/env bash
# Builds HASTE and runs every test: C++ unit tests (GoogleTest, through CTest) and the Python
# cross-checks against independent implementations. GPU tests skip themselves without a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
cmake_dir=$(cd / && python3 -c "import cmake; print(cmake.CMAKE_BIN_DIR)")
cd "${HASTE_BUILD_DIR:-build}"
"$cmake_dir/ctest" --output-on-failure -j "$(nproc)" "$@"
