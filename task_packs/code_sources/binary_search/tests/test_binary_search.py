from binary_search import count_between, find, lower_bound, upper_bound

ODD = [1, 3, 5, 7, 9, 11]
DUPS = [1, 2, 2, 2, 5, 8]


def test_find_every_item():
    assert [find(ODD, value) for value in ODD] == [0, 1, 2, 3, 4, 5]


def test_find_absent():
    assert [find(ODD, 0), find(ODD, 4), find(ODD, 12), find([], 1)] == [-1, -1, -1, -1]


def test_lower_bound():
    assert [lower_bound(DUPS, 2), lower_bound(DUPS, 9), lower_bound(DUPS, 0)] == [1, 6, 0]


def test_upper_bound():
    assert [upper_bound(DUPS, 2), upper_bound(DUPS, 8)] == [4, 6]


def test_count_between():
    assert count_between(DUPS, 2, 5) == 4
    assert count_between(DUPS, 6, 7) == 0
    assert count_between(DUPS, 9, 1) == 0
