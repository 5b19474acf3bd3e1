#!/usr/bin/env bash
# Builds what one call on the lent GPU machine needs into gpu_bin/bundle (git-ignored; carry it):
# the haste CLI and the whole test binary of a CUDA build, stripped and xz-compressed to fit the
# device tool's 64 MiB carry limit, the PyTorch anchor scripts of ../shared/tools and bibtex
# (debdeps travels with the repository). Then, with the device tool:
#   run `bash bench/gpu_run.sh` with carry gpu_bin/bundle   (see that script for its switches)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
build=$repo/${HASTE_BUILD_DIR:-build}
out=$repo/gpu_bin/bundle
mkdir -p "$out/bibtex"
ninja -C "$build" haste_cli haste_tests
for binary in tools/haste/haste tests/haste_tests; do
  name=$(basename "$binary")
  strip -o "/tmp/$name.stripped" "$build/$binary"
  xz -T0 -6 -c "/tmp/$name.stripped" > "$out/$name.xz"
done
cp "$repo"/../shared/tools/anchor_step.py "$repo"/../shared/tools/anchor_bench.py "$out/"
cp "$repo"/../shared/data/bibtex/xc/bibtex_t*.txt.xz "$out/bibtex/"
git -C "$repo" rev-parse --short HEAD > "$out/commit"
ls -la "$out"
