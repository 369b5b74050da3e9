import pytest

from rle import decode, encode


def test_encode():
    assert encode("aaabccdddd") == "3a1b2c4d"


def test_encode_short_inputs():
    assert encode("") == ""
    assert encode("x") == "1x"


def test_decode_multi_digit_counts():
    assert decode("3a1b2c4d") == "aaabccdddd"
    assert decode("12z") == "z" * 12


def test_round_trip():
    for text in ["hello", "aabbaa", "zzzzzzzzzzzz"]:
        assert decode(encode(text)) == text


def test_decode_errors():
    with pytest.raises(ValueError):
        decode("a")
    with pytest.raises(ValueError):
        decode("3")
