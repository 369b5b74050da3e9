from text_wrap import indent, truncate, wrap


def test_wrap():
    text = "the quick brown fox jumps over the lazy dog"
    assert wrap(text, 10) == ["the quick", "brown fox", "jumps over", "the lazy", "dog"]


def test_line_of_exactly_width_fits():
    assert wrap("abcd efgh", 9) == ["abcd efgh"]


def test_long_word_gets_own_line():
    assert wrap("a verylongword b", 5) == ["a", "verylongword", "b"]


def test_wrap_empty_text():
    assert wrap("", 10) == []


def test_indent_skips_blank_lines():
    assert indent(["a", "", "b"]) == ["    a", "", "    b"]


def test_truncate():
    assert truncate("hello world", 8) == "hello..."
    assert truncate("short", 8) == "short"
    assert truncate("hello", 5) == "hello"
