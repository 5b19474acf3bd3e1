"""HASTE's safetensors files against the reference implementation (PyPI `safetensors`).

Ours -> theirs: a checkpoint written by `haste train` loads with safetensors.numpy.load_file,
with the names, dtypes, shapes and values `haste inspect --json` reports.
Theirs -> ours: a file written by safetensors.numpy.save_file (every dtype HASTE reads) opens
in `haste inspect`, which reports the same shapes, dtypes, metadata and value sums.
"""
import json
import os
import pathlib
import subprocess

import numpy as np
import pytest

safetensors_numpy = pytest.importorskip("safetensors.numpy")
from safetensors import safe_open  # noqa: E402

HASTE = os.environ.get("HASTE_CLI", "haste")
DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64,
          "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}


def haste(*args):
    return subprocess.run([HASTE, *map(str, args)], check=True, capture_output=True, text=True).stdout


def inspect(path):
    return json.loads(haste("inspect", path, "--json"))


def assert_same(ours, theirs, metadata):
    assert ours["metadata"] == (metadata or {})
    assert {t["name"] for t in ours["tensors"]} == set(theirs)
    for t in ours["tensors"]:
        array = theirs[t["name"]]
        assert DTYPES[t["dtype"]] == array.dtype.type, t["name"]
        assert t["shape"] == list(array.shape), t["name"]
        assert t["bytes"] == array.nbytes, t["name"]
        expected = float(array.astype(np.float64).sum())
        assert t["sum"] == pytest.approx(expected, rel=1e-6, abs=1e-6), t["name"]


def test_reference_reads_our_checkpoint(tmp_path):
    train, test = tmp_path / "train.txt", tmp_path / "test.txt"
    haste("data", "synth", "--rows", 300, "--features", 100, "--labels", 40, "--cluster-size", 8,
          "--test-rows", 50, "--out", train, "--test-out", test, "--quiet")
    out = tmp_path / "run"
    haste("train", train, "--test", test, "--out", out, "--epochs", 1, "--hidden", 16, "-g", 4,
          "-k", 8, "--batch-size", 32, "--quiet", "--no-cache")
    checkpoint = out / "model.safetensors"
    theirs = safetensors_numpy.load_file(str(checkpoint))
    with safe_open(str(checkpoint), framework="np") as f:
        metadata = f.metadata()
    assert metadata["format"] == "haste-checkpoint"
    assert json.loads(metadata["model_config"])["fan_in"] == 8
    assert theirs["tail.indices"].shape[1] == 8
    assert_same(inspect(checkpoint), theirs, metadata)


def test_we_read_the_reference_writer(tmp_path):
    rng = np.random.default_rng(0)
    tensors = {
        "f64": rng.standard_normal((3, 2)),
        "f32": rng.standard_normal((5,)).astype(np.float32),
        "f16": rng.standard_normal((2, 2)).astype(np.float16),
        "i64": np.array([1 << 40, -5], dtype=np.int64),
        "i32": np.arange(7, dtype=np.int32).reshape(7, 1),
        "i16": np.array([-3, 300], dtype=np.int16),
        "i8": np.array([-1, 2, 3], dtype=np.int8),
        "u8": np.frombuffer(b"haste", dtype=np.uint8),
        "bool": np.array([True, False, True]),
        "empty": np.zeros((0, 4), dtype=np.float32),
        "scalar": np.array(2.5, dtype=np.float32),
    }
    metadata = {"who": "reference", "json": '{"a": 1}'}
    path = tmp_path / "theirs.safetensors"
    safetensors_numpy.save_file(tensors, str(path), metadata=metadata)
    assert_same(inspect(path), tensors, metadata)


def test_truncated_file_is_a_clear_error(tmp_path):
    path = tmp_path / "cut.safetensors"
    safetensors_numpy.save_file({"w": np.ones((64, 64), dtype=np.float32)}, str(path))
    path.write_bytes(path.read_bytes()[:-100])
    result = subprocess.run([HASTE, "inspect", str(path)], capture_output=True, text=True)
    assert result.returncode == 1
    assert "cut.safetensors: not a valid safetensors file" in result.stderr
