import pytest

from grades import letter, report


def test_middle_of_bands():
    assert [letter(s) for s in (95, 85, 75, 65, 30)] == ["A", "B", "C", "D", "F"]


def test_boundaries():
    assert [letter(s) for s in (90, 80, 70, 60, 59.5)] == ["A", "B", "C", "D", "F"]


def test_out_of_range():
    with pytest.raises(ValueError):
        letter(101)


def test_report():
    assert report({"bo": 91, "al": 80}) == ["al: B", "bo: A"]
