"""`haste data stats --json` against an independent reading of the same files.

The reference is ../shared/data/check_xc.py, the script the dataset README's numbers come
from, when it is present; otherwise the same statistics are computed here with lzma, sharing no
code with HASTE. Files: the bundled debdeps and every xc/*.txt.xz under ../shared/data.
"""
import contextlib
import importlib.util
import io
import json
import lzma
import os
import pathlib
import subprocess
import sys

import pytest

SOURCE_DIR = pathlib.Path(os.environ.get("HASTE_SOURCE_DIR", pathlib.Path(__file__).parents[2]))
SHARED_DATA = SOURCE_DIR.parent / "shared" / "data"
CHECK_XC = SHARED_DATA / "check_xc.py"
NAME_FILES = {"labels.txt.xz", "features.txt.xz"}  # names by id, not XC data


def dataset_files():
    files = sorted((SOURCE_DIR / "data").glob("*/xc/*.txt.xz"))
    if SHARED_DATA.is_dir():
        files += sorted(SHARED_DATA.glob("*/xc/*.txt.xz"))
    return [f for f in files if f.name not in NAME_FILES]


def load_check_xc():
    """check_xc.py runs over sys.argv when imported, so import it with no arguments."""
    spec = importlib.util.spec_from_file_location("check_xc", CHECK_XC)
    module = importlib.util.module_from_spec(spec)
    saved = sys.argv
    sys.argv = [str(CHECK_XC)]
    try:
        spec.loader.exec_module(module)
    finally:
        sys.argv = saved
    return module


def reference_from_check_xc(path):
    """Runs check_xc.stats and reads back its "key=value" line."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        load_check_xc().stats(str(path))
    fields = dict(token.split("=") for token in out.getvalue().split() if "=" in token)
    return {key: float(value) for key, value in fields.items()}


def reference_here(path):
    """The same statistics, for machines without ../shared (a fresh clone)."""
    with lzma.open(path, "rt") as f:
        n, n_features, n_labels = map(int, f.readline().split())
        rows = positives = nnz = empty = 0
        used, labelsets = set(), set()
        for line in f:
            line = line.rstrip("\n")
            head, _, rest = line.partition(" ")
            labels = [int(x) for x in head.split(",")] if head else []
            rows += 1
            positives += len(labels)
            nnz += len(rest.split())
            used.update(labels)
            labelsets.add(tuple(sorted(labels)))
            empty += not labels
    assert rows == n
    return {"rows": rows, "features": n_features, "labels": n_labels,
            "labels_per_row": positives / rows, "feat_nnz_per_row": nnz / rows,
            "labels_used": len(used), "distinct_labelsets": len(labelsets),
            "rows_without_labels": empty}


@pytest.mark.parametrize("path", dataset_files(), ids=lambda p: f"{p.parent.parent.name}/{p.name}")
def test_stats_match_reference(path):
    cli = os.environ.get("HASTE_CLI")
    if not cli:
        pytest.skip("HASTE_CLI is not set (run through ctest)")
    result = subprocess.run([cli, "data", "stats", "--json", str(path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    ours = json.loads(result.stdout)
    reference = reference_from_check_xc(path) if CHECK_XC.exists() else reference_here(path)

    for key in ("rows", "features", "labels", "labels_used", "distinct_labelsets",
                "rows_without_labels"):
        assert ours[key] == reference[key], key
    # check_xc.py prints these rounded to 3 and 2 decimals.
    assert ours["labels_per_row"] == pytest.approx(reference["labels_per_row"], abs=5e-4)
    assert ours["feat_nnz_per_row"] == pytest.approx(reference["feat_nnz_per_row"], abs=5e-3)


def test_finds_the_bundled_dataset():
    assert any("debdeps" in str(p) for p in dataset_files())
