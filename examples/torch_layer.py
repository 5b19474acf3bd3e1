"""Fine-tune an encoder under a HASTE output layer in PyTorch (haste.torch) on debdeps.

    PYTHONPATH=build/python python3 examples/torch_layer.py [--epochs 3] [--device cuda]

The encoder is a sparse linear layer on the tf-idf features + ReLU (any nn.Module giving [B, d]
would do); the output is haste.torch.HasteOutput: a dense head over the most frequent labels
and a group-shared tail, trained with its fused loss (on CUDA the tail's logits are never
written to memory) and rewired by DST every --dst-interval steps. Prints P@k per epoch.
"""

import argparse
import math
import pathlib
import time

import numpy as np
import torch

import haste
from haste.torch import DstSchedule, HasteOutput, SparseLinear

ROOT = pathlib.Path(__file__).resolve().parent.parent


def evaluate(encoder, output, X, Y, batch=4096):
    encoder.eval()
    with torch.no_grad():
        labels = torch.cat([output.predict_topk(encoder(X[i:i + batch]), k=5)[0].cpu()
                            for i in range(0, X.shape[0], batch)])
    encoder.train()
    return haste.evaluate(Y, labels.numpy().astype(np.int32))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--hidden", type=int, default=256, help="d, the encoder's width")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=0.003)
    parser.add_argument("--dst-interval", type=int, default=100, help="steps between DST updates")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--save", type=pathlib.Path, help="write the layers' state_dict here")
    args = parser.parse_args()
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    device = torch.device(args.device)

    data = ROOT / "data" / "debdeps" / "xc"
    X, Y = haste.read_xc(data / "debdeps_train.txt.xz")
    X_test, Y_test = haste.read_xc(data / "debdeps_test.txt.xz")
    counts = np.asarray(Y.sum(axis=0)).ravel()
    N, L = Y.shape
    encoder = torch.nn.Sequential(SparseLinear(X.shape[1], args.hidden), torch.nn.ReLU())
    # Head: the 10% most frequent labels; tail: the rest in groups of 32 reading 32 features.
    output = HasteOutput(args.hidden, L, head_labels=L // 10, group_size=32, fan_in=32,
                         label_order=np.argsort(-counts, kind="stable"))
    output.init_bias(counts, N)
    encoder.to(device)
    output.to(device)
    print(f"debdeps: {N} rows, {X.shape[1]} features, {L} labels; {output}")
    optimizer = torch.optim.Adam([*encoder.parameters(), *output.parameters()], lr=args.lr)

    steps_per_epoch = math.ceil(N / args.batch_size)
    dst = DstSchedule(args.dst_interval, end=2 * args.epochs * steps_per_epoch // 3)
    step = 0
    for epoch in range(1, args.epochs + 1):
        start, total = time.perf_counter(), 0.0
        order = rng.permutation(N)
        for first in range(0, N, args.batch_size):
            rows = order[first:first + args.batch_size]
            loss = output.loss(encoder(X[rows]), Y[rows])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item()
            step += 1
            dst.after_step(step, output, optimizer)
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        report = evaluate(encoder, output, X_test, Y_test)
        print(f"epoch {epoch}: loss {total / steps_per_epoch:.3f}, {N / seconds:.0f} rows/s, "
              + "  ".join(f"{name} {100 * report[name]:.2f}" for name in ("P@1", "P@3", "P@5")))
    if args.save:
        torch.save({"encoder": encoder.state_dict(), "output": output.state_dict()}, args.save)
        print(f"wrote {args.save}")


if __name__ == "__main__":
    main()
