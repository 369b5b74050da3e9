import pytest

from durations import format_duration, parse_duration


def test_format_short():
    assert [format_duration(s) for s in (0, 59, 61)] == ["0s", "59s", "1m 01s"]


def test_format_hours():
    assert format_duration(3723) == "1h 02m 03s"
    assert format_duration(3600) == "1h 00m 00s"


def test_negative_rejected():
    with pytest.raises(ValueError):
        format_duration(-1)


def test_parse():
    assert [parse_duration(t) for t in ("1h 2m 3s", "90s", "2m")] == [3723, 90, 120]


def test_parse_rejects_garbage():
    for text in ("abc", "", "5x", "1h x"):
        with pytest.raises(ValueError):
            parse_duration(text)


def test_round_trip():
    assert all(parse_duration(format_duration(s)) == s for s in range(0, 7300, 7))
