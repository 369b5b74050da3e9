import pytest

from intervals import coverage, gaps, merge


def test_merge_overlapping():
    assert merge([(1, 3), (2, 6), (8, 10), (15, 18)]) == [(1, 6), (8, 10), (15, 18)]


def test_touching_intervals_merge():
    assert merge([(1, 3), (3, 5)]) == [(1, 5)]


def test_unsorted_and_contained():
    assert merge([(5, 7), (1, 10)]) == [(1, 10)]
    assert merge([]) == []


def test_backwards_interval_rejected():
    with pytest.raises(ValueError):
        merge([(5, 1)])


def test_coverage():
    assert coverage([(1, 3), (2, 6), (8, 10)]) == 7


def test_gaps():
    assert gaps([(2, 4), (6, 8)], 0, 10) == [(0, 2), (4, 6), (8, 10)]
    assert gaps([], 0, 5) == [(0, 5)]
    assert gaps([(0, 5)], 0, 5) == []
