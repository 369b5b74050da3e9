"""Access-log parsing: 'GET /path 200 12ms' lines into Entry records."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Entry:
    method: str
    path: str
    status: int
    millis: int


def parse_line(line: str) -> Entry | None:
    """One log line as an Entry; None for blank lines and # comments."""
    line = line.strip()
    if not line or line.startswith("#"):
        return None
    method, path, status, millis = line.split()
    return Entry(method, path, int(status), int(millis.removesuffix("ms")))


def parse(text: str) -> list[Entry]:
    return [entry for entry in map(parse_line, text.splitlines()) if entry is not None]
