#!/usr/bin/env bash
# One call on the lent GPU machine (issue 6; copied into the bundle as run.sh by
# bench/train_gpu_bundle.sh): the GPU tests of the training step, optionally (PROFILE=1) an ncu
# per-kernel summary of the dense step, the PyTorch anchor (../shared/tools/anchor_step.py),
# `haste bench train` (BENCH_ARGS), and optionally (QUALITY=1) `haste train` on the GPU and on
# the CPU for bibtex and debdeps. Everything lands in $OUT. The run behind
# bench/results/train-nvidia-h100-80gb-hbm3-20261124.json:
#   COMMIT=... PROFILE=1 QUALITY=1 BENCH_ARGS="--labels 10000000,30000000,100000000" \
#     bash gpu_bin/gputrain/run.sh
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
bin=/tmp/gputrain
mkdir -p "$bin"
python3 -c "
import lzma, shutil
for f in ('haste', 'haste_tests'):
    with lzma.open(f + '.xz') as src, open('$bin/' + f, 'wb') as dst: shutil.copyfileobj(src, dst)"
chmod +x "$bin/haste" "$bin/haste_tests"
# libnccl.so.2 (linked since the sharded path, issue 9): the toolkit's, or the nvidia-nccl wheel's.
nccl_wheel=$(python3 -c "import nvidia.nccl, os; print(os.path.dirname(nvidia.nccl.__file__) + '/lib')" 2> /dev/null || true)
export LD_LIBRARY_PATH=/usr/local/cuda/lib64${nccl_wheel:+:$nccl_wheel}:${LD_LIBRARY_PATH:-}
export NCCL_NVLS_ENABLE=${NCCL_NVLS_ENABLE:-0}
nvidia-smi --query-gpu=name,memory.used,memory.total,clocks.sm --format=csv
ldd "$bin/haste" | grep -i "not found"
"$bin/haste_tests" --gtest_filter="${TESTS:-*OptimizerGpu*:*OutputLayerGpu*:*TrainerGpu*:*GroupShared*:*Nccl*:*TrainerMultiGpu*}" > "$OUT/tests.log" 2>&1
echo "tests rc=$?"; grep -E "FAILED|PASSED|Failure" "$OUT/tests.log" | head -40
grep -B3 -A8 "Failure" "$OUT/tests.log" | head -60
if [ -n "${PROFILE:-}" ]; then
  timeout 180 ncu --clock-control none --section SpeedOfLight --print-summary per-kernel \
    --launch-skip 2 --launch-count 16 "$bin/haste" bench train --shapes 256,768,670091,64,32 \
    --head-fractions 1 --no-dense --runs 1 --results /tmp/ncu > "$OUT/ncu.txt" 2>&1
  echo "ncu rc=$?"; grep -E "^  [a-zA-Z_].*\(|Duration" "$OUT/ncu.txt" | head -60
fi
if [ -z "${SKIP_ANCHOR:-}" ]; then
  PYTHONUNBUFFERED=1 python3 anchor_step.py > "$OUT/anchor.jsonl" 2> "$OUT/anchor.err"
  echo "anchor rc=$?"; cat "$OUT/anchor.jsonl"; tail -3 "$OUT/anchor.err"
  anchor=(--anchor "$OUT/anchor.jsonl")
else
  anchor=()
fi
"$bin/haste" bench train ${BENCH_ARGS:-} "${anchor[@]}" --commit "${COMMIT:-unknown}" \
  --results "$OUT" > "$OUT/bench.log" 2>&1
echo "bench rc=$?"; grep -v "^  " "$OUT/bench.log" | tail -30
if [ -n "${QUALITY:-}" ]; then
  repo=$(cd ../.. && pwd)
  for ds in bibtex debdeps; do
    if [ $ds = bibtex ]; then data=$here/bibtex; else data=$repo/data/debdeps/xc; fi
    for device in cuda cpu; do
      log=/tmp/train-$ds-$device.log
      timeout 240 "$bin/haste" train $data/${ds}_train.txt.xz --test $data/${ds}_test.txt.xz \
        --config $repo/configs/$ds.toml --out /tmp/run-$ds-$device --device $device -q \
        > $log 2>&1
      rc=$?
      { echo "== $ds --device $device rc=$rc"; cat $log; } >> "$OUT/quality.log"
      echo "== $ds --device $device rc=$rc"; grep -E "training on|epoch +loss|error" $log
      grep -E "^ +[0-9]+ " $log | tail -2
    done
  done
fi
