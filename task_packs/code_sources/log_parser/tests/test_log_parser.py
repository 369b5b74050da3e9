from log_parser import Entry, parse
from log_stats import error_rate, slowest, status_classes

LOG = """# access log
GET /a 200 12ms
POST /b 500 340ms

GET /c 404 7ms
GET /d 503 90ms
GET /e 201 45ms
"""


def test_parse_skips_comments_and_blank_lines():
    entries = parse(LOG)
    assert len(entries) == 5
    assert entries[0] == Entry("GET", "/a", 200, 12)


def test_error_rate_counts_5xx():
    assert error_rate(parse(LOG)) == 0.4


def test_error_rate_of_no_traffic():
    assert error_rate([]) == 0.0


def test_slowest_paths():
    assert slowest(parse(LOG)) == ["/b", "/d", "/e"]


def test_status_classes():
    assert status_classes(parse(LOG)) == {200: 2, 500: 2, 400: 1}
