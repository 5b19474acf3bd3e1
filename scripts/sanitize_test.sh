#!/usr/bin/env bash
# Builds the CPU code with AddressSanitizer + UBSan (build-sanitize/, no CUDA) and runs the unit
# tests under them: any memory error or undefined behaviour fails the run. Part of .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
export HASTE_BUILD_DIR=build-sanitize HASTE_CUDA=OFF
bash scripts/build.sh -DHASTE_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake_dir=$(cd / && python3 -c "import cmake; print(cmake.CMAKE_BIN_DIR)")
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
cd build-sanitize
"$cmake_dir/ctest" --output-on-failure -j "$(nproc)" "$@"
