from rle import decode, encode


def test_encode():
    assert encode("aaabcc") == [("a", 3), ("b", 1), ("c", 2)]
    assert encode("x") == [("x", 1)]
    assert encode("") == []


def test_round_trip():
    for text in ("hello", "aaaa", "abcabc", "zz y"):
        assert decode(encode(text)) == text


def test_decode():
    assert decode([("q", 2), ("r", 1)]) == "qqr"
