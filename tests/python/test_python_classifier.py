"""haste.Classifier: a small fit that beats chance clearly, predictions in original label ids
with their logits, save/load round trips, and checkpoints shared with the CLI both ways.

The data is synthetic with planted structure: each label owns a few signature features, and a
row's features are its labels' signatures plus noise, so a working model finds the labels.
"""

import os
import subprocess

import numpy as np
import pytest
import scipy.sparse

import haste

FEATURES, LABELS, SIGNATURE = 300, 48, 6
SMALL_MODEL = dict(hidden=[48], group_size=8, fan_in=16, head_fraction=0.25, epochs=4,
                   batch_size=64, optimizer={"lr": 0.01}, show_progress=False, threads=2)


def planted(rows, seed):
    rng = np.random.default_rng(seed)
    signatures = np.random.default_rng(0).choice(FEATURES, size=(LABELS, SIGNATURE))
    popularity = 1.0 / np.arange(1, LABELS + 1) ** 0.8
    X = scipy.sparse.lil_matrix((rows, FEATURES), dtype=np.float32)
    Y = scipy.sparse.lil_matrix((rows, LABELS), dtype=np.float32)
    for r in range(rows):
        labels = rng.choice(LABELS, size=rng.integers(1, 4), replace=False,
                            p=popularity / popularity.sum())
        features = np.concatenate([signatures[labels].ravel(), rng.choice(FEATURES, size=4)])
        for label in labels:
            Y[r, label] = 1
        for feature in features:
            X[r, feature] = rng.random() + 0.5
    return X.tocsr(), Y.tocsr()


@pytest.fixture(scope="module")
def data():
    X, Y = planted(1600, seed=1)
    X_test, Y_test = planted(300, seed=2)
    return X, Y, X_test, Y_test


@pytest.fixture(scope="module")
def trained(data):
    X, Y, X_test, Y_test = data
    return haste.Classifier(**SMALL_MODEL, seed=5).fit(X, Y, X_test, Y_test)


def test_fit_beats_chance_clearly(trained, data):
    _, Y, X_test, Y_test = data
    chance = Y_test.sum() / Y_test.shape[0] / LABELS
    report = trained.evaluate(X_test, Y_test, Y_train=Y)
    assert report["P@1"] > 0.6 > 10 * chance, report
    assert 0 < report["PSP@1"] <= 1
    history = trained.history_
    assert [epoch["epoch"] for epoch in history] == [1, 2, 3, 4]
    assert history[-1]["loss"] < history[0]["loss"]
    assert history[-1]["P@1"] == pytest.approx(report["P@1"], abs=1e-12)


def test_predict_topk_gives_original_ids_and_their_logits(trained, data):
    _, _, X_test, _ = data
    labels, scores = trained.predict_topk(X_test, k=5)
    assert labels.shape == scores.shape == (X_test.shape[0], 5)
    assert labels.dtype == np.int32 and scores.dtype == np.float32
    assert labels.min() >= 0 and labels.max() < LABELS
    assert all(len(set(row)) == 5 for row in labels)
    # Best first: the scores are the logits the C++ ranking used.
    assert np.all(np.diff(scores, axis=1) <= 0)
    # k beyond L: padded rows.
    labels_all, scores_all = trained.predict_topk(X_test[:3], k=LABELS + 2)
    assert np.all(labels_all[:, LABELS:] == -1) and np.all(np.isneginf(scores_all[:, LABELS:]))
    assert sorted(labels_all[0, :LABELS]) == list(range(LABELS))


def test_logits_match_a_dense_recomputation(trained, data):
    """Scores of all L labels recomputed densely from the tensors agree with predict_topk's."""
    _, _, X_test, _ = data
    tensors = trained.tensors()
    shape = trained.shape_
    X = X_test
    if trained.config["model"].get("normalize_input"):  # the model scales rows to unit L2 norm
        X = scipy.sparse.diags(1 / np.sqrt(np.asarray(X.multiply(X).sum(axis=1)).ravel())) @ X
    h = np.maximum(X @ tensors["encoder.0.weight"] + tensors["encoder.0.bias"], 0)
    H, g = shape["head_labels"], shape["group_size"]
    z_head = h @ tensors["head.weight"].T + tensors["head.bias"]
    slots = np.arange(shape["num_labels"] - H)
    gathered = h[:, tensors["tail.indices"][slots // g]]  # [N, slots, k]
    z_tail = np.einsum("nsk,sk->ns", gathered, tensors["tail.weight"][slots]) + tensors["tail.bias"][slots]
    z_model = np.concatenate([z_head, z_tail], axis=1)
    z = np.empty_like(z_model)
    z[:, tensors["labels.model_to_original"]] = z_model
    labels, scores = trained.predict_topk(X_test, k=3)
    np.testing.assert_allclose(scores, np.take_along_axis(z, labels, axis=1), rtol=1e-4, atol=1e-4)


def test_save_load_round_trip_predicts_identically(trained, data, tmp_path):
    _, _, X_test, _ = data
    trained.save(tmp_path / "model.safetensors")
    loaded = haste.Classifier.load(tmp_path / "model.safetensors")
    for a, b in zip(trained.predict_topk(X_test), loaded.predict_topk(X_test)):
        np.testing.assert_array_equal(a, b)
    assert loaded.config == trained.config
    assert loaded.get_params()["group_size"] == 8


def run_cli(*args):
    cli = os.environ.get("HASTE_CLI")
    if not cli:
        pytest.skip("HASTE_CLI is not set (ctest sets it)")
    result = subprocess.run([cli, *map(str, args)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result


def cli_predictions(path, k):
    """Label ids of a `haste predict` output file, best first."""
    return cli_scored_predictions(path, k)[0]


def cli_scored_predictions(path, k):
    """(label ids, scores) of a `haste predict` output file, best first."""
    rows = [[pair.split(":") for pair in line.split()][:k]
            for line in path.read_text().splitlines()[1:]]
    return (np.array([[int(label) for label, _ in row] for row in rows]),
            np.array([[float(score) for _, score in row] for row in rows], dtype=np.float32))


def test_cli_trained_checkpoint_loads_in_python(data, tmp_path):
    X, Y, X_test, Y_test = data
    haste.write_xc(tmp_path / "train.txt", X, Y)
    haste.write_xc(tmp_path / "test.txt", X_test, Y_test)
    run_cli("train", tmp_path / "train.txt", "--out", tmp_path / "run", "--epochs", 2,
            "--hidden", 32, "-g", 8, "-k", 8, "--quiet", "--no-cache", "--threads", 2)
    run_cli("predict", tmp_path / "run", tmp_path / "test.txt", "-o", tmp_path / "pred.txt",
            "-k", 5, "--no-cache")
    model = haste.Classifier.load(tmp_path / "run")
    assert model.config["train"]["epochs"] == 2  # a training checkpoint keeps its run config
    labels, _ = model.predict_topk(X_test, k=5)
    np.testing.assert_array_equal(labels, cli_predictions(tmp_path / "pred.txt", 5))


def test_python_trained_checkpoint_runs_in_the_cli(trained, data, tmp_path):
    _, _, X_test, Y_test = data
    trained.save(tmp_path / "model.safetensors")
    haste.write_xc(tmp_path / "test.txt", X_test, Y_test)
    run_cli("predict", tmp_path / "model.safetensors", tmp_path / "test.txt", "-o",
            tmp_path / "pred.txt", "-k", 5, "--no-cache")
    labels, scores = trained.predict_topk(X_test, k=5)
    cli_labels, cli_scores = cli_scored_predictions(tmp_path / "pred.txt", 5)
    np.testing.assert_array_equal(labels, cli_labels)
    np.testing.assert_array_equal(scores, cli_scores)  # the same logits, written exactly


def test_dense_inputs_and_config_file(data, tmp_path):
    X, Y, X_test, _ = data
    config = tmp_path / "run.toml"
    config.write_text("[model]\nhidden = [16]\ngroup_size = 8\nfan_in = 8\n"
                      "[train]\nepochs = 1\nshow_progress = false\n")
    model = haste.Classifier.from_config_file(config, threads=2).fit(X[:400].toarray(), Y[:400])
    assert model.shape_["sparse_input"] is False
    labels, scores = model.predict_topk(X_test[:10].toarray(), k=2)
    assert labels.shape == (10, 2) and np.isfinite(scores).all()


def test_bad_settings_are_clear_errors(data):
    with pytest.raises(ValueError, match="unknown setting 'fanin'.*fan_in"):
        haste.Classifier(fanin=3)
    X, Y, _, _ = data
    with pytest.raises(ValueError, match="group_size"):
        haste.Classifier(group_size=0, show_progress=False).fit(X[:50], Y[:50])
    with pytest.raises(RuntimeError, match="not trained"):
        haste.Classifier().predict_topk(X[:2])
