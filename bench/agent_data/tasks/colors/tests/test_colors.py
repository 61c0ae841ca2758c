from colors import mix, rgb_to_hex


def test_hex():
    assert rgb_to_hex(0.0, 0.5, 1.0) == "#0080ff"
    assert rgb_to_hex(1.2, -0.1, 0.0) == "#ff0000"


def test_mix():
    assert rgb_to_hex(*mix((0, 0, 0), (1, 1, 1), 1.0)) == "#ffffff"
