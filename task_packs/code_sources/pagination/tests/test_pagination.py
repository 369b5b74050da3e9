import pytest

from pagination import page_count, page_window, paginate

ITEMS = list(range(25))


def test_page_count():
    assert [page_count(0, 10), page_count(10, 10), page_count(11, 10)] == [1, 1, 2]


def test_first_page():
    page = paginate(ITEMS, 1)
    assert page.items == list(range(10))
    assert (page.total_pages, page.has_next, page.has_previous) == (3, True, False)


def test_last_page():
    page = paginate(ITEMS, 3)
    assert page.items == [20, 21, 22, 23, 24]
    assert (page.total_pages, page.has_next, page.has_previous) == (3, False, True)


def test_out_of_range_numbers_are_clamped():
    assert paginate(ITEMS, 9).number == 3
    assert paginate(ITEMS, 0).number == 1


def test_page_window():
    assert page_window(1, 20) == [1, 2, 3, 4, 5]
    assert page_window(10, 20) == [8, 9, 10, 11, 12]
    assert page_window(20, 20) == [16, 17, 18, 19, 20]
    assert page_window(2, 3) == [1, 2, 3]


def test_rejects_zero_per_page():
    with pytest.raises(ValueError):
        page_count(5, 0)
