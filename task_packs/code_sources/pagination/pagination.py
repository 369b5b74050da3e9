"""Pagination: slice result lists into 1-based pages and choose which page links to show."""

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Page:
    items: list
    number: int
    total_pages: int
    has_next: bool
    has_previous: bool


def page_count(total: int, per_page: int) -> int:
    """Pages needed for `total` items; an empty list still has one (empty) page."""
    if per_page < 1:
        raise ValueError("per_page must be at least 1")
    return max(1, math.ceil(total / per_page))


def paginate(items: list, number: int, per_page: int = 10) -> Page:
    """Page `number` of items; numbers outside the range are clamped to the first/last page."""
    pages = page_count(len(items), per_page)
    number = min(max(number, 1), pages)
    start = (number - 1) * per_page
    return Page(items[start:start + per_page], number, pages, number < pages, number > 1)


def page_window(current: int, total_pages: int, width: int = 5) -> list[int]:
    """`width` page numbers centred on current, shifted to stay inside 1..total_pages."""
    half = width // 2
    first = max(1, min(current - half, total_pages - width + 1))
    last = min(total_pages, first + width - 1)
    return list(range(first, last + 1))
