"""Binary search over sorted sequences: exact lookup, insertion points, range counts."""

from collections.abc import Sequence
from typing import Any


def find(items: Sequence, target: Any) -> int:
    """Index of target in the sorted items, or -1 when it is absent."""
    lo, hi = 0, len(items) - 1
    while lo <= hi:
        mid = (lo + hi) // 2
        if items[mid] == target:
            return mid
        if items[mid] < target:
            lo = mid + 1
        else:
            hi = mid - 1
    return -1


def lower_bound(items: Sequence, target: Any) -> int:
    """First index whose item is >= target; len(items) when there is none."""
    lo, hi = 0, len(items)
    while lo < hi:
        mid = (lo + hi) // 2
        if items[mid] < target:
            lo = mid + 1
        else:
            hi = mid
    return lo


def upper_bound(items: Sequence, target: Any) -> int:
    """First index whose item is > target; len(items) when there is none."""
    lo, hi = 0, len(items)
    while lo < hi:
        mid = (lo + hi) // 2
        if items[mid] <= target:
            lo = mid + 1
        else:
            hi = mid
    return lo


def count_between(items: Sequence, low: Any, high: Any) -> int:
    """How many items lie in the closed range [low, high]."""
    return max(0, upper_bound(items, high) - lower_bound(items, low))
