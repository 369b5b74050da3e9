"""Closed integer intervals, e.g. booked time slots: merge, total coverage, free gaps."""


def merge(intervals: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted, non-overlapping intervals; touching ones such as (1, 3) and (3, 5) merge."""
    merged: list[tuple[int, int]] = []
    for start, end in sorted(intervals):
        if start > end:
            raise ValueError(f"interval ({start}, {end}) ends before it starts")
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def coverage(intervals: list[tuple[int, int]]) -> int:
    """Total length covered by at least one interval."""
    return sum(end - start for start, end in merge(intervals))


def gaps(intervals: list[tuple[int, int]], lo: int, hi: int) -> list[tuple[int, int]]:
    """The parts of [lo, hi] that no interval covers."""
    result = []
    cursor = lo
    for start, end in merge(intervals):
        if start > cursor:
            result.append((cursor, min(start, hi)))
        cursor = max(cursor, end)
        if cursor >= hi:
            break
    if cursor < hi:
        result.append((cursor, hi))
    return result
