from slugify import slugify, unique_slug


def test_slugify():
    assert slugify("Hello, World!") == "hello-world"


def test_accents_are_transliterated():
    assert slugify("Crème brûlée à la carte") == "creme-brulee-a-la-carte"


def test_cut_at_word_boundary():
    assert slugify("abc def ghi", max_length=8) == "abc-def"
    assert slugify("abc def", max_length=7) == "abc-def"


def test_default_limit_is_40():
    assert slugify("a" * 30 + " " + "b" * 30) == "a" * 30


def test_unique_slug():
    assert unique_slug("Hello World", set()) == "hello-world"
    assert unique_slug("Hello World", {"hello-world", "hello-world-2"}) == "hello-world-3"
