"""Summaries of parsed access-log entries for the on-call dashboard."""

from collections import Counter

from log_parser import Entry


def error_rate(entries: list[Entry]) -> float:
    """Share of requests that failed on the server side (5xx)."""
    if not entries:
        return 0.0
    errors = sum(1 for entry in entries if entry.status >= 500)
    return errors / len(entries)


def slowest(entries: list[Entry], n: int = 3) -> list[str]:
    ranked = sorted(entries, key=lambda entry: entry.millis, reverse=True)
    return [entry.path for entry in ranked[:n]]


def status_classes(entries: list[Entry]) -> dict[int, int]:
    """Request counts per status class: 200, 300, 400, 500."""
    return dict(Counter(entry.status // 100 * 100 for entry in entries))
