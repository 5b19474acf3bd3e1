"""Fit, predict and evaluate HASTE from Python on the bundled debdeps dataset.

    PYTHONPATH=build/python python3 examples/python_fit.py [--epochs 4] [--save model.safetensors]

(or without PYTHONPATH after `pip install .`). Uses the settings of configs/debdeps.toml.
"""

import argparse
import pathlib
import time

import haste

ROOT = pathlib.Path(__file__).resolve().parent.parent


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: all cores)")
    parser.add_argument("--save", type=pathlib.Path, help="write the model's checkpoint here")
    args = parser.parse_args()

    data = ROOT / "data" / "debdeps" / "xc"
    X, Y = haste.read_xc(data / "debdeps_train.txt.xz", show_progress=True)
    X_test, Y_test = haste.read_xc(data / "debdeps_test.txt.xz", show_progress=True)
    print(f"train {X.shape[0]} rows, {X.shape[1]} features, {Y.shape[1]} labels; "
          f"test {X_test.shape[0]} rows")

    model = haste.Classifier.from_config_file(ROOT / "configs" / "debdeps.toml",
                                              epochs=args.epochs, threads=args.threads)
    start = time.perf_counter()
    model.fit(X, Y, X_test, Y_test)
    print(f"trained in {time.perf_counter() - start:.1f} s")
    for epoch in model.history_:
        print(f"epoch {epoch['epoch']}: loss {epoch['loss']:.4f}, "
              f"{epoch['examples_per_second']:.0f} ex/s, P@1 {100 * epoch['P@1']:.2f}")

    start = time.perf_counter()
    labels, scores = model.predict_topk(X_test, k=5)
    print(f"predicted {labels.shape[0]} rows in {time.perf_counter() - start:.2f} s; "
          f"row 0: labels {labels[0].tolist()}, logits {[round(float(s), 2) for s in scores[0]]}")
    report = haste.evaluate(Y_test, labels, haste.jain_propensities(Y))
    print("  ".join(f"{name} {100 * value:.2f}" for name, value in report.items()
                    if name.endswith(("@1", "@3", "@5"))))
    if args.save:
        model.save(args.save)
        print(f"wrote {args.save} (haste predict {args.save} ... reads it too)")


if __name__ == "__main__":
    main()
