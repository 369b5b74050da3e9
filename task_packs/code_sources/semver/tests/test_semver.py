import pytest

from semver import compare, latest, parse


def test_parse():
    assert parse("1.2.3") == (1, 2, 3, None)
    assert parse("2.0.0-rc.1") == (2, 0, 0, "rc.1")


def test_parse_rejects_garbage():
    with pytest.raises(ValueError):
        parse("1.2")


def test_compare_is_numeric():
    assert compare("1.10.0", "1.9.0") == 1
    assert compare("1.2.3", "1.2.4") == -1
    assert compare("3.0.0", "3.0.0") == 0


def test_prerelease_is_lower_than_release():
    assert compare("1.0.0-alpha", "1.0.0") == -1
    assert compare("1.0.0", "1.0.0-alpha") == 1


def test_latest():
    assert latest(["1.2.0", "1.10.1", "1.9.9"]) == "1.10.1"


def test_latest_of_nothing():
    with pytest.raises(ValueError):
        latest([])
