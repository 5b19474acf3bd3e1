#!/usr/bin/env bash
# One command on a fresh machine: install dependencies, build, then train HASTE on the bundled
# real dataset (debdeps, 22K labels), predict the test set and evaluate the predictions.
# Training runs on the GPU when one is present and the build has CUDA, else on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
haste=${HASTE_BUILD_DIR:-build}/tools/haste/haste
data=data/debdeps/xc
run=runs/quickstart

"$haste" device
"$haste" data stats "$data/debdeps_train.txt.xz"
"$haste" train "$data/debdeps_train.txt.xz" --test "$data/debdeps_test.txt.xz" \
  --config configs/debdeps.toml --out "$run"
"$haste" predict "$run" "$data/debdeps_test.txt.xz" -k 5 --out "$run/predictions.txt"
"$haste" eval --pred "$run/predictions.txt" --truth "$data/debdeps_test.txt.xz" \
  --train "$data/debdeps_train.txt.xz"
echo "quickstart: model, metrics.json and plot.png are in $run/"
