#!/usr/bin/env bash
# Builds the bundle that bench/train_gpu_run.sh runs on the lent GPU machine (issue 6): the
# haste CLI and a test binary of the GPU tests of the training step (linked from their test
# objects alone), stripped and xz-compressed to fit the 64 MiB carry limit, plus the PyTorch
# anchor script and bibtex. Needs a configured CUDA build in $HASTE_BUILD_DIR (build-gputrain).
# Then, with the device tool: run `bash gpu_bin/gputrain/run.sh`, carry gpu_bin/gputrain.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
out=$repo/gpu_bin/gputrain
mkdir -p "$out/bibtex"
cd "$repo/${HASTE_BUILD_DIR:-build-gputrain}"
objects=()
for t in optimizer_gpu output_layer_gpu trainer_gpu group_shared group_shared_fused; do
  objects+=(tests/CMakeFiles/haste_tests.dir/cuda/${t}_kernels_test.cpp.o)
done
objects+=(tests/CMakeFiles/haste_tests.dir/cuda/device_test.cpp.o)
ninja haste_cli "${objects[@]}" src/libhaste.a
link=$(ninja -t commands tests/haste_tests | tail -1 | sed 's/ && cd .*//; s/^: && //')
libs=$(echo "$link" | tr ' ' '\n' | grep -v '\.o$' | grep -v -x -e '-o' -e 'tests/haste_tests' -e '/usr/bin/c++' | tr '\n' ' ')
/usr/bin/c++ -o /tmp/gputrain_tests "${objects[@]}" $libs
strip -o /tmp/gputrain_tests.s /tmp/gputrain_tests
strip -o /tmp/gputrain_haste.s tools/haste/haste
xz -T2 -6 -c /tmp/gputrain_tests.s > "$out/haste_tests.xz"
xz -T2 -6 -c /tmp/gputrain_haste.s > "$out/haste.xz"
cp "$repo/../shared/tools/anchor_step.py" "$repo/bench/train_gpu_run.sh" "$out/"
mv "$out/train_gpu_run.sh" "$out/run.sh"
cp "$repo"/../shared/data/bibtex/xc/bibtex_t*.txt.xz "$out/bibtex/"
ls -la "$out"
