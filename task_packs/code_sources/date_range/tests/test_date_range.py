from datetime import date

from date_range import business_days, days_between, month_end, overlaps


def test_days_between_is_inclusive():
    days = days_between(date(2024, 1, 30), date(2024, 2, 2))
    assert days == [date(2024, 1, 30), date(2024, 1, 31), date(2024, 2, 1), date(2024, 2, 2)]


def test_reversed_range_is_empty():
    assert days_between(date(2024, 1, 2), date(2024, 1, 1)) == []


def test_touching_ranges_overlap():
    assert overlaps(date(2024, 1, 1), date(2024, 1, 5), date(2024, 1, 5), date(2024, 1, 9))
    assert overlaps(date(2024, 1, 5), date(2024, 1, 9), date(2024, 1, 1), date(2024, 1, 5))


def test_separate_ranges_do_not_overlap():
    assert not overlaps(date(2024, 1, 1), date(2024, 1, 4), date(2024, 1, 5), date(2024, 1, 9))


def test_business_days_skip_weekends():
    assert business_days(date(2024, 3, 1), date(2024, 3, 11)) == 7


def test_month_end():
    assert month_end(date(2024, 2, 10)) == date(2024, 2, 29)
    assert month_end(date(2023, 12, 31)) == date(2023, 12, 31)
