"""haste.data: XC files <-> scipy.sparse round trips through the C++ readers and writers, checked
against an independent pure-Python parse of the written text."""

import lzma

import numpy as np
import pytest
import scipy.sparse

import haste


@pytest.fixture(scope="module")
def dataset():
    X = scipy.sparse.random(60, 40, density=0.1, format="csr", dtype=np.float32, random_state=1)
    X.data = np.round(X.data, 4)  # values that survive a text round trip exactly in float32
    Y = scipy.sparse.random(60, 25, density=0.08, format="lil", random_state=2)
    Y[5, :] = 0  # a row without labels
    Y = Y.tocsr()
    Y.eliminate_zeros()
    Y.data[:] = 1
    return X, Y.astype(np.float32)


def parse_single_file(text):
    """The single-file format read by hand: header "N F L", then "l1,l2 f:v f:v" lines."""
    lines = text.splitlines()
    rows, cols, labels = map(int, lines[0].split())
    X = scipy.sparse.lil_matrix((rows, cols), dtype=np.float32)
    Y = scipy.sparse.lil_matrix((rows, labels), dtype=np.float32)
    for r, line in enumerate(lines[1:]):
        fields = line.split(" ")
        first = 0
        if fields[0] and ":" not in fields[0]:
            for label in fields[0].split(","):
                Y[r, int(label)] = 1
            first = 1
        for pair in fields[first:]:
            if pair:
                feature, value = pair.split(":")
                X[r, int(feature)] = float(value)
    return X.tocsr(), Y.tocsr()


def assert_same(a, b):
    assert a.shape == b.shape
    np.testing.assert_array_equal(a.toarray(), b.toarray())


@pytest.mark.parametrize("name", ["data.txt", "data.txt.xz"])
def test_single_file_round_trip(tmp_path, dataset, name):
    X, Y = dataset
    path = tmp_path / name
    haste.write_xc(path, X, Y)
    X_read, Y_read = haste.read_xc(path, use_cache=False)
    assert X_read.dtype == np.float32 and Y_read.dtype == np.float32
    assert_same(X_read, X)
    assert_same(Y_read, Y)
    text = lzma.open(path, "rt").read() if name.endswith(".xz") else path.read_text()
    X_text, Y_text = parse_single_file(text)
    assert_same(X_text, X)
    assert_same(Y_text, Y)


def test_split_round_trip_text_and_npy(tmp_path, dataset):
    X, Y = dataset
    haste.write_xc_split(tmp_path / "X.txt", tmp_path / "Y.txt", X, Y)
    X_read, Y_read = haste.read_xc_split(tmp_path / "X.txt", tmp_path / "Y.txt", use_cache=False)
    assert_same(X_read, X)
    assert_same(Y_read, Y)

    haste.write_xc_split(tmp_path / "X.npy", tmp_path / "Y2.txt", X, Y)
    np.testing.assert_array_equal(np.load(tmp_path / "X.npy"), X.toarray())
    X_dense, Y_read = haste.read_xc_split(tmp_path / "X.npy", tmp_path / "Y2.txt", use_cache=False)
    assert isinstance(X_dense, np.ndarray) and X_dense.dtype == np.float32
    np.testing.assert_array_equal(X_dense, X.toarray())
    assert_same(Y_read, Y)


def test_score_matrix_keeps_values(tmp_path):
    scores = scipy.sparse.csr_matrix(np.array([[0, 0.5, 0.25], [2.0, 0, 0]], dtype=np.float32))
    haste.write_xc_matrix(tmp_path / "scores.txt", scores)
    assert_same(haste.read_xc_matrix(tmp_path / "scores.txt", use_cache=False), scores)


def test_unsorted_and_duplicate_entries_are_canonicalised(tmp_path):
    X = scipy.sparse.csr_matrix(
        (np.array([1, 2, 3], np.float32), np.array([2, 0, 2]), np.array([0, 3])), shape=(1, 3))
    Y = scipy.sparse.csr_matrix(np.array([[0, 1]], dtype=np.float32))
    haste.write_xc(tmp_path / "d.txt", X, Y)
    X_read, _ = haste.read_xc(tmp_path / "d.txt", use_cache=False)
    np.testing.assert_array_equal(X_read.toarray(), [[2, 0, 4]])


def test_malformed_file_names_file_and_line(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_text("2 5 3\n0 1:0.5\n1,7 2:1\n")
    with pytest.raises(haste.HasteError, match=r"bad\.txt:3"):
        haste.read_xc(path, use_cache=False)
