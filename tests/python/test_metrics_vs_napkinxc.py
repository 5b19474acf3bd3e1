"""`haste eval` against napkinXC's metric functions, an independent implementation from PyPI.

Random long-tailed truth, training and prediction sets are written in our file formats, scored
by the CLI (`--json`), and every metric (P, nDCG, PSP, PSnDCG at k = 1..5) is compared with
napkinxc.metrics on the same data. PSP/PSnDCG agreeing also checks our Jain et al. propensities,
since napkinXC computes its own from the same training labels.

Run through ctest (which sets HASTE_CLI), or: HASTE_CLI=build/tools/haste/haste pytest -q <this>
"""

import json
import os
import subprocess

import numpy as np
import pytest
from scipy.sparse import csr_matrix

try:
    import napkinxc.metrics as napkin
except ImportError as error:  # CI installs it; a missing cross-check must not pass silently
    napkin = None
    napkin_import_error = error

TOLERANCE = 1e-6
NUM_LABELS = 1000
METRICS = ["P", "nDCG", "PSP", "PSnDCG"]


def require_napkinxc():
    if napkin is None:
        pytest.fail(
            f"napkinxc is not importable ({napkin_import_error}); "
            "run scripts/setup.sh to install the test dependencies"
        )


def haste_cli():
    cli = os.environ.get("HASTE_CLI")
    if not cli:
        pytest.fail("HASTE_CLI is not set: run this test through ctest, or set it to build/tools/haste/haste")
    return cli


def long_tailed_label_sets(rng, rows, empty_fraction):
    """Label sets with Zipf-like label frequencies; about `empty_fraction` of rows get none."""
    weights = 1.0 / np.arange(1, NUM_LABELS + 1) ** 1.1
    weights = rng.permutation(weights / weights.sum())  # popular labels anywhere in the id range
    label_sets = []
    for _ in range(rows):
        if rng.random() < empty_fraction:
            label_sets.append([])
            continue
        count = min(1 + rng.poisson(3), 25)
        label_sets.append(sorted(rng.choice(NUM_LABELS, size=count, replace=False, p=weights).tolist()))
    return label_sets, weights


def random_features(rng, rows, num_features):
    """Some feature indices and values per row; eval ignores them but the formats need them."""
    out = []
    for _ in range(rows):
        indices = np.sort(rng.choice(num_features, size=rng.integers(1, 6), replace=False))
        out.append([(int(i), float(np.float32(rng.random()))) for i in indices])
    return out


def predictions_for(rng, truth_sets, weights):
    """Scored predictions per row: a mix of true and popular labels, 0 to 12 of them, in random
    order. A third of the rows get scores rounded to one decimal so that ties occur."""
    predictions = []
    for truth in truth_sets:
        count = int(rng.integers(0, 13))
        candidates = set(rng.choice(NUM_LABELS, size=count, replace=False, p=weights).tolist())
        candidates.update(t for t in truth if rng.random() < 0.6)
        labels = rng.permutation(sorted(candidates))[:count] if count else np.array([], dtype=int)
        scores = rng.random(len(labels)).astype(np.float32)
        if rng.random() < 1 / 3:
            scores = np.round(scores, 1).astype(np.float32)
        predictions.append([(int(label), float(score)) for label, score in zip(labels, scores)])
    return predictions


def ranking(scored_row):
    """Labels best first; equal scores go to the lower label id (as haste eval documents)."""
    return [label for label, score in sorted(scored_row, key=lambda pair: (-np.float32(pair[1]), pair[0]))]


def write_single_file(path, label_sets, features, num_features):
    with open(path, "w") as out:
        out.write(f"{len(label_sets)} {num_features} {NUM_LABELS}\n")
        for labels, row in zip(label_sets, features):
            feature_text = " ".join(f"{i}:{v!r}" for i, v in row)
            out.write(f"{','.join(map(str, labels))} {feature_text}\n")


def write_matrix_file(path, rows, num_cols):
    """Split-format matrix file: header "N C", then "i:v i:v" per row."""
    with open(path, "w") as out:
        out.write(f"{len(rows)} {num_cols}\n")
        for row in rows:
            out.write(" ".join(f"{i}:{v!r}" for i, v in row) + "\n")


def run_eval(*args):
    result = subprocess.run([haste_cli(), "eval", *map(str, args)], capture_output=True, text=True)
    assert result.returncode == 0, f"haste eval failed:\n{result.stderr}"
    return json.loads(result.stdout), result.stderr


def to_csr(label_sets):
    indptr = np.cumsum([0] + [len(s) for s in label_sets])
    indices = np.array([l for s in label_sets for l in s], dtype=np.int64)
    return csr_matrix((np.ones(len(indices)), indices, indptr), shape=(len(label_sets), NUM_LABELS))


@pytest.fixture(scope="module")
def data_files(tmp_path_factory):
    """One random problem: training set (single file), test truth (single file and label file),
    predictions. The Python-side copies are what napkinXC scores."""
    rng = np.random.default_rng(20240607)
    directory = tmp_path_factory.mktemp("metrics")
    num_features = 50
    train_sets, weights = long_tailed_label_sets(rng, 2000, empty_fraction=0.01)
    truth_sets, _ = long_tailed_label_sets(rng, 400, empty_fraction=0.05)
    predictions = predictions_for(rng, truth_sets, weights)

    files = {name: directory / name for name in ["train.txt", "test.txt", "test_labels.txt", "pred.txt"]}
    write_single_file(files["train.txt"], train_sets, random_features(rng, 2000, num_features), num_features)
    write_single_file(files["test.txt"], truth_sets, random_features(rng, 400, num_features), num_features)
    write_matrix_file(files["test_labels.txt"], [[(l, 1.0) for l in s] for s in truth_sets], NUM_LABELS)
    write_matrix_file(files["pred.txt"], predictions, NUM_LABELS)
    return {
        "files": files,
        "train": to_csr(train_sets),
        "truth": truth_sets,
        "rankings": [ranking(row) for row in predictions],
    }


def napkinxc_metrics(data, A, B):
    inverse_propensities = napkin.Jain_et_al_inverse_propensity(data["train"], A=A, B=B)
    truth, rankings = data["truth"], data["rankings"]
    return {
        "P": napkin.precision_at_k(truth, rankings, k=5),
        "nDCG": napkin.ndcg_at_k(truth, rankings, k=5),
        "PSP": napkin.psprecision_at_k(truth, rankings, inverse_propensities, k=5),
        "PSnDCG": napkin.psndcg_at_k(truth, rankings, inverse_propensities, k=5),
    }


@pytest.mark.parametrize("A, B", [(0.55, 1.5), (0.5, 0.4), (0.6, 2.6)])
def test_every_metric_matches_napkinxc(data_files, A, B):
    require_napkinxc()
    files = data_files["files"]
    ours, _ = run_eval("--pred", files["pred.txt"], "--truth", files["test.txt"],
                       "--train", files["train.txt"], "-A", A, "-B", B, "--json")
    theirs = napkinxc_metrics(data_files, A, B)

    assert ours["rows"] == len(data_files["truth"])
    worst = 0.0
    for metric in METRICS:
        for k in range(1, 6):
            difference = abs(ours[f"{metric}@{k}"] - theirs[metric][k - 1])
            worst = max(worst, difference)
            assert difference < TOLERANCE, f"{metric}@{k}: haste {ours[f'{metric}@{k}']} vs napkinXC {theirs[metric][k - 1]}"
    print(f"A={A} B={B}: max |haste - napkinXC| over P/nDCG/PSP/PSnDCG@1..5 = {worst:.3g}")


def test_lone_label_file_as_truth_gives_the_same_numbers(data_files):
    files = data_files["files"]
    from_dataset, _ = run_eval("--pred", files["pred.txt"], "--truth", files["test.txt"],
                               "--train", files["train.txt"], "--json")
    from_labels, _ = run_eval("--pred", files["pred.txt"], "--truth", files["test_labels.txt"],
                              "--train", files["train.txt"], "--json")
    assert from_dataset == from_labels


def test_without_training_set_ps_metrics_are_skipped_with_a_note(data_files):
    require_napkinxc()
    files = data_files["files"]
    ours, stderr = run_eval("--pred", files["pred.txt"], "--truth", files["test.txt"], "--json")
    assert "PSP@1" not in ours and "PSnDCG@5" not in ours
    assert "--train" in stderr
    theirs = napkinxc_metrics(data_files, 0.55, 1.5)
    for k in range(1, 6):
        assert abs(ours[f"P@{k}"] - theirs["P"][k - 1]) < TOLERANCE
