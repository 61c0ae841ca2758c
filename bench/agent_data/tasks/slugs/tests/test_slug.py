from slug import slugify, unique_slug


def test_simple():
    assert slugify("hello world") == "hello-world"


def test_accents():
    assert slugify("Café crème") == "cafe-creme"


def test_punctuation_at_the_ends():
    assert slugify("Hello, World!") == "hello-world"
    assert slugify("  --Spaces--  ") == "spaces"


def test_unique():
    assert unique_slug("Hello world", {"hello-world", "hello-world-2"}) == "hello-world-3"
