from text import initials, truncate


def test_short_text_is_kept():
    assert truncate("hello", 5) == "hello"


def test_truncate_counts_the_ellipsis():
    assert truncate("hello world", 8) == "hello w…"
    assert len(truncate("x" * 50, 10)) == 10


def test_initials():
    assert initials("ada  lovelace") == "AL"
