#!/usr/bin/env bash
# Configures and builds HASTE into build/ (or $HASTE_BUILD_DIR). Extra arguments go to CMake.
# CUDA code is compiled when nvcc is found; set HASTE_CUDA=OFF to skip it.
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${HASTE_BUILD_DIR:-build}

# The PyPI cmake wheel (>= 3.28, installed by setup.sh) knows nvcc's C++20 flags; Debian 12's
# cmake 3.25 does not.
# Run from / so that the repo's cmake/ folder is not mistaken for the cmake Python package.
cmake_bin=$(cd / && python3 -c "import cmake, os; print(os.path.join(cmake.CMAKE_BIN_DIR, 'cmake'))")
mkdir -p "$build_dir"
werror=OFF
[ -n "${CI:-}" ] && werror=ON
# ccache, where installed, lets several build directories of one checkout share compiled objects.
launcher=()
command -v ccache > /dev/null &&
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache)

"$cmake_bin" -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DHASTE_CUDA="${HASTE_CUDA:-ON}" -DHASTE_WERROR="$werror" "${launcher[@]}" "$@" > "$build_dir/configure.log" ||
  { cat "$build_dir/configure.log"; exit 1; }
"$cmake_bin" --build "$build_dir" -j "$(nproc)"
