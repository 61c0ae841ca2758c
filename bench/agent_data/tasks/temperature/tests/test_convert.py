import pytest

from convert import celsius_to_fahrenheit, celsius_to_kelvin, fahrenheit_to_celsius


def test_boiling_point():
    assert celsius_to_fahrenheit(100) == 212


def test_round_trip():
    for c in (-40, 0, 37, 100):
        assert fahrenheit_to_celsius(celsius_to_fahrenheit(c)) == pytest.approx(c)


def test_kelvin():
    assert celsius_to_kelvin(0) == 273.15
