import pytest

from matrix import identity, multiply, shape, trace, transpose


def test_shape():
    assert shape([[1, 2, 3], [4, 5, 6]]) == (2, 3)
    assert shape([]) == (0, 0)


def test_ragged_rows_rejected():
    with pytest.raises(ValueError):
        shape([[1, 2], [3]])


def test_transpose():
    assert transpose([[1, 2, 3], [4, 5, 6]]) == [[1, 4], [2, 5], [3, 6]]


def test_multiply():
    assert multiply([[1, 2], [3, 4]], [[5, 6], [7, 8]]) == [[19, 22], [43, 50]]
    assert multiply([[1, 2, 3], [4, 5, 6]], [[1], [0], [2]]) == [[7], [16]]


def test_multiply_shape_mismatch():
    with pytest.raises(ValueError):
        multiply([[1, 2]], [[1, 2]])


def test_identity_is_neutral():
    m = [[2, 0, 1], [1, 3, 5], [4, 4, 4]]
    assert multiply(m, identity(3)) == m


def test_trace():
    assert trace([[1, 2], [3, 4]]) == 5
    with pytest.raises(ValueError):
        trace([[1, 2]])
