"""haste.metrics against napkinxc.metrics, an independent implementation from PyPI.

A random long-tailed problem is scored three ways (top-k label arrays with -1 padding, a scipy
score matrix, a dense score matrix) and every metric (P, nDCG, PSP, PSnDCG at k = 1..5) is
compared with napkinXC's on the same rankings; the propensities are compared too.
"""

import numpy as np
import pytest
import scipy.sparse

import haste

napkin = pytest.importorskip("napkinxc.metrics", reason="run scripts/setup.sh to install napkinxc")

TOLERANCE = 1e-6
ROWS, LABELS = 500, 300


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(7)
    weights = 1.0 / np.arange(1, LABELS + 1) ** 1.1
    weights = rng.permutation(weights / weights.sum())

    def label_matrix(rows):
        sets = [rng.choice(LABELS, size=min(1 + rng.poisson(3), 20), replace=False, p=weights)
                for _ in range(rows)]
        sets[0] = np.array([], dtype=int)  # a row without labels counts, as in napkinXC
        indptr = np.cumsum([0] + [len(s) for s in sets])
        indices = np.concatenate(sets).astype(np.int32)
        return scipy.sparse.csr_matrix((np.ones(len(indices), np.float32), indices, indptr),
                                       shape=(rows, LABELS))

    Y_train, Y_true = label_matrix(3000), label_matrix(ROWS)
    # Scores that favour the true labels, rounded so that ties occur (broken by label id).
    scores = np.round(rng.random((ROWS, LABELS)) + 0.7 * Y_true.toarray(), 1).astype(np.float32)
    return Y_train, Y_true, scores


def napkin_reference(Y_true, rankings, inverse_propensities):
    return {
        "P": napkin.precision_at_k(Y_true, rankings, k=5),
        "nDCG": napkin.ndcg_at_k(Y_true, rankings, k=5),
        "PSP": napkin.psprecision_at_k(Y_true, rankings, inverse_propensities, k=5),
        "PSnDCG": napkin.psndcg_at_k(Y_true, rankings, inverse_propensities, k=5),
    }


def assert_match(ours, theirs):
    for metric, values in theirs.items():
        for k in range(1, 6):
            assert abs(ours[f"{metric}@{k}"] - values[k - 1]) < TOLERANCE, (
                f"{metric}@{k}: haste {ours[f'{metric}@{k}']} vs napkinXC {values[k - 1]}")


@pytest.mark.parametrize("A, B", [(0.55, 1.5), (0.6, 2.6)])
def test_propensities_match_napkinxc(problem, A, B):
    Y_train, _, _ = problem
    ours = haste.jain_propensities(Y_train, A=A, B=B)
    theirs = napkin.Jain_et_al_inverse_propensity(Y_train, A=A, B=B)
    np.testing.assert_allclose(1 / ours, theirs, rtol=1e-6)  # napkinXC: float32


def test_top_k_arrays_with_padding_match_napkinxc(problem):
    Y_train, Y_true, scores = problem
    top = haste.metrics.top_k(scores, k=5)
    top[1::7, 3:] = -1  # some rows rank fewer than k labels
    rankings = [[int(label) for label in row if label >= 0] for row in top]
    propensities = haste.jain_propensities(Y_train)
    ours = haste.evaluate(Y_true, top, propensities)
    assert_match(ours, napkin_reference(Y_true, rankings, 1 / propensities))


def test_score_matrices_sparse_and_dense_match_napkinxc(problem):
    Y_train, Y_true, scores = problem
    sparse_scores = scipy.sparse.csr_matrix(np.where(scores > 0.9, scores, 0))
    propensities = haste.jain_propensities(Y_train)
    for matrix in (sparse_scores, scores):
        top = haste.metrics.top_k(matrix, k=5)
        rankings = [[int(label) for label in row if label >= 0] for row in top]
        assert_match(haste.evaluate(Y_true, matrix, propensities),
                     napkin_reference(Y_true, rankings, 1 / propensities))


def test_sparse_and_dense_top_k_agree_on_ties(problem):
    _, _, scores = problem
    dense_top = haste.metrics.top_k(scores, k=5)
    # Shift scores positive so the sparse matrix keeps every entry.
    sparse_top = haste.metrics.top_k(scipy.sparse.csr_matrix(scores + 1), k=5)
    np.testing.assert_array_equal(dense_top, sparse_top)


def test_metric_functions_return_values_at_1_to_k(problem):
    Y_train, Y_true, scores = problem
    top = haste.metrics.top_k(scores)
    propensities = haste.jain_propensities(Y_train)
    report = haste.evaluate(Y_true, top, propensities)
    np.testing.assert_allclose(haste.metrics.precision_at_k(Y_true, top, k=3),
                               [report[f"P@{k}"] for k in (1, 2, 3)])
    assert haste.metrics.ndcg_at_k(Y_true, top).shape == (5,)
    assert haste.metrics.psprecision_at_k(Y_true, top, propensities)[0] == report["PSP@1"]
    assert haste.metrics.psndcg_at_k(Y_true, top, propensities)[4] == report["PSnDCG@5"]
    with pytest.raises(ValueError, match="k = 6"):
        haste.metrics.precision_at_k(Y_true, top, k=6)


def test_bad_inputs_are_clear_errors(problem):
    _, Y_true, _ = problem
    with pytest.raises(ValueError, match="rows"):
        haste.evaluate(Y_true, np.zeros((3, 5), dtype=np.int32))
    with pytest.raises(ValueError):
        haste.evaluate(Y_true, np.full((ROWS, 5), LABELS + 3, dtype=np.int32))
