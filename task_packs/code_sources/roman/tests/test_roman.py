import pytest

from roman import from_roman, to_roman

SAMPLES = {1: "I", 4: "IV", 9: "IX", 14: "XIV", 40: "XL", 90: "XC", 400: "CD",
           1994: "MCMXCIV", 3999: "MMMCMXCIX"}


def test_to_roman():
    assert {n: to_roman(n) for n in SAMPLES} == SAMPLES


def test_out_of_range():
    for number in (0, 4000):
        with pytest.raises(ValueError):
            to_roman(number)


def test_from_roman():
    assert {from_roman(text): text for text in SAMPLES.values()} == SAMPLES


def test_round_trip():
    assert all(from_roman(to_roman(n)) == n for n in range(1, 4000))


def test_non_canonical_rejected():
    with pytest.raises(ValueError):
        from_roman("IIII")
