"""Turns the metrics files of `QUALITY=1 bash bench/gpu_run.sh` (metrics-DATASET-RUN.json, one
per `haste train` run) into one result file in the format of ../shared/DESIGN.md section 12.

    python3 bench/gpu_quality_json.py FOLDER --device "NVIDIA H100 80GB HBM3" --commit abc1234 \
        --out bench/results/gpu-train-quality-<device>-<date>.json

Each row is one run: its last epoch's metrics, the training wall time over all epochs (train_s,
also as median_ms: one run per row), and what DST changed."""
import argparse
import datetime
import json
import pathlib
import re


def row_of(path: pathlib.Path) -> dict:
    dataset, run = re.fullmatch(r"metrics-([^-]+)-(.+)\.json", path.name).groups()
    metrics = json.loads(path.read_text())
    epochs = metrics["epochs"]
    last = epochs[-1]
    train_s = sum(e["seconds"] for e in epochs)
    dst = metrics["config"]["train"]["dst"]
    return {
        "dataset": dataset,
        "impl": "haste",
        "op": "train",
        "run": run,
        "device": "cpu" if run == "cpu" else "cuda",
        "dst": dst["regrow"] if dst["enabled"] else "off",
        "epochs": last["epoch"],
        "metrics": last["metrics"],
        "epoch_s": train_s / len(epochs),
        "train_s": train_s,
        "examples_per_second_last_epoch": last["examples_per_second"],
        "eval_s_last_epoch": last["eval_seconds"],
        "output_layer_bytes": metrics["output_layer_bytes"],
        "dst_changed_slots": sum(e.get("dst_changed_slots", 0) for e in epochs),
        "median_ms": 1e3 * train_s,
        "runs": 1,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=pathlib.Path)
    parser.add_argument("--device", required=True)
    parser.add_argument("--commit", required=True)
    parser.add_argument("--out", type=pathlib.Path, required=True)
    args = parser.parse_args()
    rows = [row_of(p) for p in sorted(args.folder.glob("metrics-*.json"))]
    if not rows:
        raise SystemExit(f"no metrics-*.json files in {args.folder}")
    result = {
        "bench": "gpu-train-quality",
        "device": args.device,
        "cpu_runs_on": "the same machine's cores",
        "commit": args.commit,
        "date": datetime.date.today().isoformat(),
        "command": "QUALITY=1 bash bench/gpu_run.sh  (bundle: bash scripts/gpu_bundle.sh; each "
        "run: haste train DATA_train --test DATA_test --config configs/DATASET.toml "
        "--device cuda|cpu [--dst random])",
        "rows": rows,
        "median_ms_is": "the run's training wall time over all epochs (train_s), one run per row",
    }
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out} ({len(rows)} rows)")


if __name__ == "__main__":
    main()
