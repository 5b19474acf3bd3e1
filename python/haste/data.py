"""Extreme Classification Repository files <-> scipy.sparse CSR matrices.

Features come back as float32 CSR matrices (or a dense float32 array for .npy features), labels
as CSR patterns (float32 ones where a row has the label). Reading uses the C++ readers, which
validate everything, report file:line on errors, read .xz/.gz/.bz2 as they come and keep a
binary cache ($HASTE_CACHE_DIR, else ~/.cache/haste) for fast reloads. Writers compress when the
path ends in .xz, .gz or .bz2 and never leave a half-written file.
"""

import os

import numpy as np

from . import _core
from ._convert import from_core_csr, from_core_dataset, to_core_csr, to_core_dataset


def _is_npy(path):
    return os.fspath(path).endswith(".npy")


def read_xc(path, *, use_cache=True, show_progress=False):
    """Single-file format (header "N F L", lines "l1,l2 f:v f:v ...") -> (X, Y)."""
    return from_core_dataset(_core.read_dataset(path, None, use_cache, show_progress))


def read_xc_split(features, labels, *, use_cache=True, show_progress=False):
    """Split format: a feature file ("N F" header, "f:v" lines; or .npy dense rows, read with
    NumPy) and a label file ("N L" header, "l:v" lines) -> (X, Y)."""
    if not _is_npy(features):
        return from_core_dataset(_core.read_dataset(features, labels, use_cache, show_progress))
    X = np.load(features)
    if X.ndim != 2:
        raise ValueError(f"{features}: dense features must be a 2-D array, not {X.ndim}-D")
    Y = read_xc_matrix(labels, use_cache=use_cache, pattern=True)
    if Y.shape[0] != X.shape[0]:
        raise ValueError(f"{features} has {X.shape[0]} rows but {labels} has {Y.shape[0]}")
    return np.ascontiguousarray(X, dtype=np.float32), Y


def read_xc_matrix(path, *, use_cache=True, pattern=False):
    """One "N C" matrix file (e.g. a prediction file of label:score pairs) -> CSR matrix with its
    values, or a pattern of ones with `pattern`."""
    return from_core_csr(_core.read_xc_matrix(path, use_cache), pattern=pattern)


def write_xc(path, X, Y):
    """Writes (X, Y) in the single-file format."""
    _core.write_xc(to_core_dataset(X, Y), path)


def write_xc_split(features, labels, X, Y):
    """Writes (X, Y) in the split format; a `features` path ending in .npy gets dense rows
    written with NumPy."""
    if not _is_npy(features):
        _core.write_xc_split(to_core_dataset(X, Y), features, labels)
        return
    X = X.toarray() if hasattr(X, "toarray") else X
    np.save(features, np.ascontiguousarray(X, dtype=np.float32))
    write_xc_matrix(labels, Y, pattern=True)


def write_xc_matrix(path, M, *, pattern=False):
    """Writes one matrix ("N C" header, "c:v" lines); with `pattern` every value is written as 1."""
    if pattern:
        M = (M != 0).astype(np.float32)
    _core.write_xc_matrix(to_core_csr(M), path)
