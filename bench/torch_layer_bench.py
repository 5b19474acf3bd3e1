"""haste.torch on CUDA tensors against the same layer in plain PyTorch, one training step each.

    PYTHONPATH=build/python python3 bench/torch_layer_bench.py --out bench/results/x.json

Rows (DESIGN.md 12), all measured in this run on one shape (B, d, L tail labels, k, g):
  haste_torch        GroupSharedLinear forward (fwd) and forward + backward (step, autograd)
  haste_torch_fused  GroupSharedLinear.loss: BCE + all gradients in the fused kernel (step)
  torch_reference    the same layer in PyTorch (gather + batched einsum) on the bf16 operands
                     the kernels read (fwd, step)
Times are CUDA-event medians over --runs repetitions after warm-up; the fused step includes
turning the targets (a CUDA sparse CSR tensor) into the kernel's CSR on the host.
"""

import argparse
import datetime
import json
import subprocess

import torch

from haste.torch import GroupSharedLinear


def reference(h, indices, weight, bias):
    """The layer in PyTorch: gather each group's k features, one batched product per group."""
    G, k = indices.shape
    gathered = h[:, indices.long()]  # [B, G, k]
    z = torch.einsum("bgk,gjk->bgj", gathered, weight.view(G, -1, k))
    return z.reshape(h.shape[0], -1) + bias


def timed(fn, runs):
    for _ in range(3):
        fn()
    times = []
    for _ in range(runs):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    times.sort()
    return {"median_ms": times[len(times) // 2], "p10_ms": times[len(times) // 10],
            "p90_ms": times[(9 * len(times)) // 10], "runs": runs}


def bench_shape(B, d, L, k, g, runs):
    shape = {"B": B, "d": d, "L": L, "k": k, "g": g}
    layer = GroupSharedLinear(d, L, g, k).cuda()
    h = torch.randn(B, d, device="cuda", requires_grad=True)
    targets = (torch.rand(B, L, device="cuda") < 5 / L).float().to_sparse_csr()
    upstream = torch.randn(B, L, device="cuda")
    w16 = layer.weight.detach().to(torch.bfloat16).requires_grad_()
    b32 = layer.bias.detach().clone().requires_grad_()
    h16 = h.detach().to(torch.bfloat16).requires_grad_()

    def haste_step():
        layer(h).backward(upstream)

    def reference_step():
        reference(h16, layer.indices, w16, b32).backward(upstream)

    cases = [
        ("haste_torch", "fwd", lambda: layer(h)),
        ("haste_torch", "step", haste_step),
        ("haste_torch_fused", "step", lambda: layer.loss(h, targets).backward()),
        ("torch_reference", "fwd", lambda: reference(h16, layer.indices, w16, b32)),
        ("torch_reference", "step", reference_step),
    ]
    rows = []
    for impl, op, fn in cases:
        row = {"shape": shape, "impl": impl, "op": op}
        try:
            torch.cuda.reset_peak_memory_stats()
            row.update(timed(fn, runs))
            row["peak_mem_bytes"] = torch.cuda.max_memory_allocated()
        except (RuntimeError, ValueError) as error:  # out of memory, unsupported shape
            row["error"] = str(error).splitlines()[0]
        rows.append(row)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--commit", default=None)
    args = parser.parse_args()
    commit = args.commit or subprocess.run(["git", "rev-parse", "--short", "HEAD"],
                                           capture_output=True, text=True).stdout.strip()
    rows = []
    for B, d, L, k, g in [(256, 768, 131072, 64, 32), (256, 768, 670720, 64, 32),
                          (512, 512, 131072, 32, 8)]:
        rows += bench_shape(B, d, L, k, g, args.runs)
    result = {"bench": "torch-layer", "device": torch.cuda.get_device_name(), "commit": commit,
              "date": datetime.date.today().isoformat(),
              "command": "python3 bench/torch_layer_bench.py --out " + args.out, "rows": rows}
    with open(args.out, "w") as file:
        json.dump(result, file, indent=1)
    print(f"{'shape':>34} {'impl':>18} {'op':>5} {'median_ms':>10}")
    for row in rows:
        s = row["shape"]
        name = f"B{s['B']} d{s['d']} L{s['L']} k{s['k']} g{s['g']}"
        print(f"{name:>34} {row['impl']:>18} {row['op']:>5} "
              f"{row.get('median_ms', float('nan')):>10.3f} {row.get('error', '')}")


if __name__ == "__main__":
    main()
