from inventory import load, low_stock, total_units


def test_total_units():
    assert total_units(load()) == 17


def test_low_stock():
    assert low_stock(load()) == ["A-200", "B-300"]
    assert low_stock(load(), threshold=3) == ["B-300"]
