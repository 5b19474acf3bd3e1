"""scipy.sparse / NumPy inputs <-> the C++ core's containers (haste._core)."""

import numpy as np
import scipy.sparse

from . import _core

_INT32_MAX = np.iinfo(np.int32).max


def to_core_csr(matrix, *, pattern=False):
    """A _core.CsrMatrix copy of a scipy sparse matrix or a 2-D array (duplicates summed, indices
    sorted). With `pattern`, only where the nonzeros are is kept (a label matrix)."""
    csr = scipy.sparse.csr_matrix(matrix)
    if csr.shape[1] > _INT32_MAX:
        raise ValueError(f"{csr.shape[1]} columns: at most {_INT32_MAX} are supported")
    if not csr.has_canonical_format:
        csr = csr.copy()
        csr.sum_duplicates()
    if pattern:
        if np.any(csr.data == 0):
            csr = csr.copy()
            csr.eliminate_zeros()
        values = None
    else:
        values = np.ascontiguousarray(csr.data, dtype=np.float32)
    return _core.CsrMatrix(
        np.ascontiguousarray(csr.indptr, dtype=np.int64),
        np.ascontiguousarray(csr.indices, dtype=np.int32),
        values,
        csr.shape[1],
    )


def to_core_features(features):
    """Sparse features -> _core.CsrMatrix; a dense 2-D array -> _core.DenseMatrix."""
    if scipy.sparse.issparse(features):
        return to_core_csr(features)
    array = np.ascontiguousarray(features, dtype=np.float32)
    if array.ndim != 2:
        raise ValueError(f"features must be a 2-D array or a scipy sparse matrix, not {array.ndim}-D")
    return _core.DenseMatrix(array)


def to_core_dataset(features, labels=None):
    """A _core.Dataset of features and (optionally) labels, each copied once."""
    core_labels = None if labels is None else to_core_csr(labels, pattern=True)
    return _core.Dataset(to_core_features(features), core_labels)


def from_core_csr(exported, *, pattern=False):
    """The (indptr, indices, values, shape) tuple of the core as a scipy CSR matrix; a pattern
    gets float32 ones as values."""
    indptr, indices, values, shape = exported
    if pattern or values is None:
        values = np.ones(len(indices), dtype=np.float32)
    return scipy.sparse.csr_matrix((values, indices, indptr), shape=shape)


def from_core_dataset(exported):
    """(features, labels): features a CSR matrix, or a dense array for .npy inputs."""
    sparse_features, dense_features, labels = exported
    features = dense_features if dense_features is not None else from_core_csr(sparse_features)
    return features, from_core_csr(labels, pattern=True)
