#!/usr/bin/env bash
# Builds haste's Python package for the lent GPU machine's Python (3.12 there; see
# /work/.library/device/KINDS.md) into gpu_bin/torch/haste, for the haste.torch GPU check:
#   HASTE_BUILD_DIR=build-x bash scripts/gpu_torch_module.sh PY_INCLUDE
#   run: PYTHONPATH=$PWD/gpu_bin/torch python3 -m pytest tests/python/test_torch_cuda.py
#        (carry gpu_bin/torch)
# PY_INCLUDE holds that Python's headers (its sysconfig include dir, with the real pyconfig.h in
# place of Ubuntu's multiarch wrapper), copied from the machine once. Only the nanobind parts
# depend on the Python version: they are recompiled against PY_INCLUDE with the commands of the
# (CUDA) build's haste_python target, and linked with that build's libhaste.a.
set -euo pipefail
cd "$(dirname "$0")/.."
py_include=$(realpath "$1")
build_dir=${HASTE_BUILD_DIR:-build}
soabi=cpython-$(sed -n 's/^#define PY_MINOR_VERSION[[:space:]]*\([0-9]*\).*/3\1/p' \
  "$py_include/patchlevel.h")-x86_64-linux-gnu
here_include=$(cd / && python3 -c "import sysconfig; print(sysconfig.get_paths()['include'])")
here_soabi=$(cd / && python3 -c "import sysconfig; print(sysconfig.get_config_var('SOABI'))")
out=gpu_bin/torch/haste
(cd "$build_dir" && ninja haste_python)
mkdir -p "$out" "$build_dir/py-$soabi"
# Every compile and link command of haste_python except the haste library's, redirected.
(cd "$build_dir" && ninja -t commands haste_python | grep -E '^(ccache|: &&)' |
  grep -v 'src/CMakeFiles/haste.dir' |
  sed -e "s|$here_include|$py_include|g" -e "s| python/CMakeFiles/| py-$soabi/CMakeFiles/|g" \
      -e "s|python/libnanobind-static.a|py-$soabi/libnanobind-static.a|g" \
      -e "s|python/haste/_core.$here_soabi.so|py-$soabi/_core.$soabi.so|g" > "py-$soabi/commands"
  grep -o -- "-o py-$soabi/[^ ]*" "py-$soabi/commands" | sed 's/-o //' | xargs -n1 dirname |
    sort -u | xargs mkdir -p
  bash -e "py-$soabi/commands")
cp python/haste/*.py "$out/"
cp "$build_dir/py-$soabi/_core.$soabi.so" "$out/"
git rev-parse --short HEAD > gpu_bin/torch/commit
echo "gpu_torch_module: $out ready ($soabi)"
