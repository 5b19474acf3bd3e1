"""Ranking metrics of extreme classification: P@k, nDCG@k, PSP@k and PSnDCG@k for k = 1..5.

The C++ implementation (include/haste/metrics.hpp) computes them; its definitions follow
napkinxc.metrics (checked in tests/python/test_python_metrics.py). PSP@k and PSnDCG@k are
normalised by the best achievable value, the XMC way.

`Y_true` is an N x L scipy sparse matrix (or 0/1 array) of true labels. `predictions` is one of:
  - an integer array [N, k] of label ids, best first, padded with -1 (what
    haste.Classifier.predict_topk returns),
  - a scipy sparse score matrix [N, L] (each row ranked by score, ties to the lower label id),
  - a dense float score matrix [N, L] (ranked the same way).
`propensities` are the Jain et al. p_l of each label (see jain_propensities), not their inverses.
"""

import numpy as np
import scipy.sparse

from . import _core
from ._convert import to_core_csr

MAX_K = _core.MAX_K
DEFAULT_A = _core.DEFAULT_PROPENSITY_A
DEFAULT_B = _core.DEFAULT_PROPENSITY_B


def jain_propensities(Y_train, A=DEFAULT_A, B=DEFAULT_B):
    """p_l = 1 / (1 + C exp(-A log(N_l + B))), C = (log N - 1)(B + 1)^A, from training labels.
    Usual A, B: 0.55, 1.5 by default; 0.5, 0.4 for Wikipedia; 0.6, 2.6 for Amazon datasets."""
    return _core.jain_propensities(to_core_csr(Y_train, pattern=True), A, B)


def label_counts(Y):
    """How many rows carry each label."""
    return _core.label_counts(to_core_csr(Y, pattern=True))


def top_k(scores, k=MAX_K):
    """The k best labels of each row of a score matrix, best first, ties to the lower label id,
    as an int32 array [N, k] padded with -1 (a sparse row may have fewer than k entries)."""
    if scipy.sparse.issparse(scores):
        labels, _ = _core.top_k(to_core_csr(scores), k)
        return labels
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise ValueError(f"scores must be a 2-D matrix [N, L], not {scores.ndim}-D")
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN")
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    labels = np.full((scores.shape[0], k), -1, dtype=np.int32)
    labels[:, : order.shape[1]] = order
    return labels


def evaluate(Y_true, predictions, propensities=None):
    """Every metric at k = 1..5 as a dict: "P@1" ... "nDCG@5", and with propensities "PSP@1" ...
    "PSnDCG@5". Values are fractions in [0, 1]."""
    truth = to_core_csr(Y_true, pattern=True)
    if propensities is not None:
        propensities = np.ascontiguousarray(propensities, dtype=np.float64)
    if scipy.sparse.issparse(predictions):
        named = _core.evaluate_scores(to_core_csr(predictions), truth, propensities)
    else:
        predictions = np.asarray(predictions)
        if not np.issubdtype(predictions.dtype, np.integer):
            predictions = top_k(predictions)
        top = np.ascontiguousarray(predictions, dtype=np.int32)
        named = _core.evaluate_top_k(top, truth, propensities)
    return dict(named)


def _at_k(name, Y_true, predictions, propensities, k):
    if not 1 <= k <= MAX_K:
        raise ValueError(f"k = {k}: metrics are computed for k = 1..{MAX_K}")
    report = evaluate(Y_true, predictions, propensities)
    return np.array([report[f"{name}@{i}"] for i in range(1, k + 1)])


def precision_at_k(Y_true, predictions, k=MAX_K):
    """[P@1, ..., P@k]."""
    return _at_k("P", Y_true, predictions, None, k)


def ndcg_at_k(Y_true, predictions, k=MAX_K):
    """[nDCG@1, ..., nDCG@k]."""
    return _at_k("nDCG", Y_true, predictions, None, k)


def psprecision_at_k(Y_true, predictions, propensities, k=MAX_K):
    """[PSP@1, ..., PSP@k]."""
    return _at_k("PSP", Y_true, predictions, propensities, k)


def psndcg_at_k(Y_true, predictions, propensities, k=MAX_K):
    """[PSnDCG@1, ..., PSnDCG@k]."""
    return _at_k("PSnDCG", Y_true, predictions, propensities, k)
