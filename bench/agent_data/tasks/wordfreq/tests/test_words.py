from words import counts, top_words

TEXT = "the cat and the dog and the bird. A cat!"


def test_counts():
    assert counts(TEXT)["the"] == 3
    assert counts(TEXT)["cat"] == 2


def test_top_words():
    assert top_words(TEXT) == ["the", "and", "cat"]
    assert top_words(TEXT, 1) == ["the"]
