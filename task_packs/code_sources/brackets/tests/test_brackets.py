from brackets import first_error, is_balanced, max_depth


def test_balanced():
    assert is_balanced("a(b[c]{d})")
    assert is_balanced("")


def test_mismatched_closer():
    assert first_error("(]") == 1


def test_unexpected_closer():
    assert first_error("a)") == 1


def test_unclosed_reports_outermost():
    assert first_error("((x)") == 0
    assert first_error("((x") == 0


def test_max_depth():
    assert max_depth("(a[b{c}])") == 3
    assert max_depth("(())()") == 2
    assert max_depth("") == 0
