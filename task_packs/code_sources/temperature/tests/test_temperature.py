import pytest

from temperature import c_to_f, c_to_k, convert, describe, f_to_c


def test_celsius_to_fahrenheit():
    assert c_to_f(100) == 212
    assert c_to_f(-40) == -40


def test_fahrenheit_to_celsius():
    assert f_to_c(212) == pytest.approx(100)


def test_kelvin():
    assert c_to_k(0) == pytest.approx(273.15)
    assert c_to_k(-273.15) == 0.0


def test_below_absolute_zero():
    with pytest.raises(ValueError):
        c_to_k(-300)


def test_convert():
    assert convert(300, "K", "F") == pytest.approx(80.33)
    assert convert(1.5, "C", "C") == 1.5


def test_unknown_scale():
    with pytest.raises(ValueError):
        convert(1, "X", "C")


def test_describe():
    assert describe(21.456) == "21.5 °C"
    assert describe(70, "F") == "70.0 °F"
