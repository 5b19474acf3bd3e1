#!/usr/bin/env bash
# One command on a fresh machine: install dependencies, build, and run the main job on the
# bundled real dataset (debdeps, 22K labels). Runs on the GPU when one is present, else the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
haste=${HASTE_BUILD_DIR:-build}/tools/haste/haste
data=data/debdeps/xc

"$haste" device
# Training lands with the CPU engine; until then the main job inspects the dataset.
"$haste" data stats "$data/debdeps_train.txt.xz"
"$haste" data stats "$data/debdeps_test.txt.xz"
