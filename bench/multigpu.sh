#!/usr/bin/env bash
# The scaling measurement of issue 10 in one command, on a machine with several GPUs: the output
# layer's training step at the Amazon-3M shape (L = 2,812,281, d = 768, k = 32, g = 32, B = 256,
# head 10% of the labels and no head) on 1, 2 and 4 GPUs (those present), label-sharded through
# NCCL, beside the one-GPU layer without NCCL (its overhead); then growing label counts on every
# GPU count, to find the largest that trains (rows that do not fit carry "error"). Writes
# bench/results/scale-<device>-<date>.json (every row with "gpus" and "comm") and prints the
# table and the largest L per GPU count.
#
#   bash bench/multigpu.sh                      # haste from build/, results into bench/results
#   HASTE=/tmp/haste RESULTS=$OUT COMMIT=abc1234 bash bench/multigpu.sh
#   LABELS=5624562,11248562 RUNS=10 bash bench/multigpu.sh
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
haste=${HASTE:-$repo/build/tools/haste/haste}
results=${RESULTS:-$repo/bench/results}
commit=${COMMIT:-$(git -C "$repo" rev-parse --short HEAD 2> /dev/null || echo unknown)}
source "$repo/scripts/gpu_env.sh"

present=$(nvidia-smi -L | wc -l)
gpus=()
for n in 1 2 4; do [ "$n" -le "$present" ] && gpus+=("$n"); done
gpu_list=$(IFS=,; echo "${gpus[*]}")
echo "GPUs present: $present; label-sharded runs on: $gpu_list; NCCL_NVLS_ENABLE=$NCCL_NVLS_ENABLE"
nvidia-smi --query-gpu=name,memory.total --format=csv

# Label counts past what one GPU holds: 2x .. 32x Amazon-3M.
labels=${LABELS:-5624562,11249124,22498248,44996496,89992992}
"$haste" bench train --shapes 256,768,2812281,32,32 --head-fractions 0,0.1 --no-dense \
  --labels "$labels" --scale-k 32 --gpus "$gpu_list" --runs "${RUNS:-30}" \
  --scale-runs "${SCALE_RUNS:-10}" --commit "$commit" --results "$results"

latest=$(ls -t "$results"/scale-*.json | head -1)
python3 - "$latest" << 'PY'
import json, sys
rows = json.load(open(sys.argv[1]))["rows"]
print(f"\n{sys.argv[1]}")
print(f"{'gpus':>4} {'comm':>5} {'largest L that trains':>22} {'ms at Amazon-3M (H=0)':>22} {'speedup':>8} {'efficiency':>10}")
base = next((r["median_ms"] for r in rows if r["gpus"] == 1 and r["comm"] == "nccl"
             and r["shape"]["L"] == 2812281 and r["shape"]["H"] == 0 and "median_ms" in r), None)
for gpus, comm in sorted({(r["gpus"], r["comm"]) for r in rows}):
    mine = [r for r in rows if r["gpus"] == gpus and r["comm"] == comm]
    fits = [r["shape"]["L"] for r in mine if "median_ms" in r]
    ms = next((r["median_ms"] for r in mine if r["shape"]["L"] == 2812281 and r["shape"]["H"] == 0
               and "median_ms" in r), None)
    speedup = base / ms if base and ms else None
    print(f"{gpus:>4} {comm:>5} {max(fits) if fits else '-':>22} {ms if ms else '-':>22} "
          f"{f'{speedup:.2f}' if speedup else '-':>8} {f'{speedup / gpus:.2f}' if speedup else '-':>10}")
PY
