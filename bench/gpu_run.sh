#!/usr/bin/env bash
# One call on the lent GPU machine, from the repository root, over the bundle that
# scripts/gpu_bundle.sh built (carry gpu_bin/bundle). Everything it writes lands in $OUT.
# Switches (environment), each a stage:
#   TESTS=filter   the test binary with this gtest filter ("all": every test, the CLI tests on
#                  the GPU through `--device auto`); default: the GPU suites and the CLI tests
#   SANITIZE=1     compute-sanitizer memcheck and racecheck over every GPU suite at small shapes
#   QUALITY=1      `haste train` on bibtex and debdeps: 3 runs on the GPU (same seed: their
#                  spread) and 1 on the CPU; debdeps once more on the GPU with DST (random)
#   BENCH=1        ../shared/tools/anchor_step.py, then `haste bench train` (BENCH_ARGS) with
#                  the anchor's figures beside ours
#   MULTIGPU=1     bench/multigpu.sh (label-sharded step on every GPU count present, NCCL)
set -uo pipefail
# The device tool brings back 8 files at most: logs go to a folder packed into one archive.
results=$OUT
OUT=$(mktemp -d)
trap 'tar -C "$OUT" -cJf "$results/gpu_run.tar.xz" .' EXIT
repo=$(pwd)
bundle=$repo/gpu_bin/bundle
commit=$(cat "$bundle/commit")
# The test binary names the CLI and the sources by this checkout's absolute paths.
build=/work/main/build
if [ ! -e /work/main ]; then mkdir -p /work && ln -s "$repo" /work/main; fi
mkdir -p "$build/tools/haste" "$build/tests"
python3 -c "
import lzma, shutil, sys
for src, dst in (('haste', 'tools/haste/haste'), ('haste_tests', 'tests/haste_tests')):
    with lzma.open('$bundle/' + src + '.xz') as f, open('$build/' + dst, 'wb') as g:
        shutil.copyfileobj(f, g)"
chmod +x "$build/tools/haste/haste" "$build/tests/haste_tests"
haste=$build/tools/haste/haste
source "$repo/scripts/gpu_env.sh"
nvidia-smi --query-gpu=name,memory.used,memory.total,clocks.sm --format=csv
gpu_suites='*Gpu*:*GroupShared*:*DstKernels*:*Device*:*BatchUploader*:*Encoder*:*Nccl*:*TrainCli*:*ResourceErrors*'

filter=${TESTS:-$gpu_suites}
[ "$filter" = all ] && filter='*'
(cd /tmp && "$build/tests/haste_tests" --gtest_brief=1 --gtest_filter="$filter") > "$OUT/tests.log" 2>&1
echo "tests rc=$?"; grep -E "^\[  (PASSED|FAILED|SKIPPED)|FAILED  \]" "$OUT/tests.log" | head -40
grep -B2 -A12 "Failure" "$OUT/tests.log" | head -80

if [ -n "${SANITIZE:-}" ]; then
  # Small shapes of every suite: the first parameter sets, the fused kernel at g = 8 and 32,
  # k = 128 (/5), and backward to inputs' other plans (/3: one block per SM, /11: two).
  small='*GroupSharedKernels.*/0:*GroupSharedKernels.*/3:*GroupSharedKernels.*/5'
  small+=':*GroupSharedKernels.*/8:*GroupSharedKernels.*/11'
  small+=':*GroupSharedFusedTrain.*/0:*GroupSharedFusedTrain.*/4:*GroupSharedTopK.*/0'
  small+=':*GroupSharedTopKTies*:*EncoderGpuTest.*/0:*BatchUploader*:*OptimizerGpu*'
  small+=':*OutputLayerGpuGradients.*/0:*OutputLayerGpuStep*:*OutputLayerGpuTrainStep.*/0'
  # The DST kernels use no shared memory of their own; under racecheck the test's cub sort and
  # cuBLAS product ran for over 8 minutes, so it runs under memcheck only.
  for tool in memcheck racecheck; do
    filter=$small
    [ "$tool" = memcheck ] && filter+=':*DstOnThreeShards*'
    compute-sanitizer --tool "$tool" --error-exitcode 1 "$build/tests/haste_tests" \
      --gtest_brief=1 --gtest_filter="$filter" > "$OUT/sanitize-$tool.log" 2>&1
    echo "compute-sanitizer $tool rc=$?"; tail -4 "$OUT/sanitize-$tool.log"
  done
fi

if [ -n "${QUALITY:-}" ]; then
  train() {  # dataset, device, run name, extra flags
    local data=$repo/data/debdeps/xc
    [ "$1" = bibtex ] && data=$bundle/bibtex
    timeout 300 "$haste" train "$data/$1_train.txt.xz" --test "$data/$1_test.txt.xz" \
      --config "$repo/configs/$1.toml" --out "/tmp/run-$1-$3" --device "$2" -q "${@:4}" \
      > "$OUT/train-$1-$3.log" 2>&1
    echo "== $1 $3 (--device $2 ${*:4}) rc=$?"
    grep -E "training on|error" "$OUT/train-$1-$3.log"
    cp "/tmp/run-$1-$3/metrics.json" "$OUT/metrics-$1-$3.json" 2>/dev/null
    python3 - "$OUT/metrics-$1-$3.json" <<'PY'
import json, sys
try:
    epochs = json.load(open(sys.argv[1]))["epochs"]
except Exception as e:
    sys.exit(f"   no metrics: {e}")
last = epochs[-1]
m = last["metrics"]
print("   epoch {}: P@1/3/5 {:.2f} {:.2f} {:.2f}  train {:.1f} s ({:.0f} rows/s)  eval {:.2f} s  dst {}".format(
    last["epoch"], 100 * m["P@1"], 100 * m["P@3"], 100 * m["P@5"],
    sum(e["seconds"] for e in epochs), last["examples_per_second"], last["eval_seconds"],
    sum(e.get("dst_changed_slots", 0) for e in epochs)))
PY
  }
  for ds in bibtex debdeps; do
    for run in 1 2 3; do train $ds cuda gpu$run; done
    train $ds cpu cpu
  done
  train debdeps cuda gpu-dst --dst random
fi

if [ -n "${BENCH:-}" ]; then
  PYTHONUNBUFFERED=1 python3 "$bundle/anchor_step.py" > "$OUT/anchor-step.jsonl" 2> "$OUT/anchor.err"
  echo "anchor_step rc=$?"; cat "$OUT/anchor-step.jsonl"; tail -3 "$OUT/anchor.err"
  "$haste" bench train ${BENCH_ARGS:-} --anchor "$OUT/anchor-step.jsonl" --commit "$commit" \
    --results "$OUT" > "$OUT/bench.log" 2>&1
  echo "bench train rc=$?"; grep -v "^  " "$OUT/bench.log" | tail -30
fi

if [ -n "${MULTIGPU:-}" ]; then
  HASTE=$haste RESULTS=$OUT COMMIT=$commit bash "$repo/bench/multigpu.sh" > "$OUT/multigpu.log" 2>&1
  echo "multigpu rc=$?"; grep -v "^  " "$OUT/multigpu.log" | tail -30
fi
