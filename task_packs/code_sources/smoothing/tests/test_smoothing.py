import pytest

from smoothing import ema, moving_average, percent_change


def test_moving_average():
    assert moving_average([1, 2, 3, 4, 5], 2) == [1.5, 2.5, 3.5, 4.5]
    assert moving_average([1, 2, 3, 4, 5], 5) == [3.0]
    assert moving_average([1, 2], 3) == []


def test_window_must_be_positive():
    with pytest.raises(ValueError):
        moving_average([1], 0)


def test_ema():
    assert ema([10, 20, 30]) == [10, 15.0, 22.5]
    assert ema([1, 5, 2], alpha=1) == [1, 5, 2]


def test_percent_change():
    assert percent_change(50, 75) == 50.0
    assert percent_change(-50, -25) == 50.0


def test_percent_change_from_zero():
    with pytest.raises(ZeroDivisionError):
        percent_change(0, 5)
