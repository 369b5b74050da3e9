"""Date ranges: inclusive day lists, overlap tests, business-day counts and month ends."""

from datetime import date, timedelta


def days_between(start: date, end: date) -> list[date]:
    """Every day from start to end, both included; empty when end is before start."""
    if end < start:
        return []
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


def overlaps(a_start: date, a_end: date, b_start: date, b_end: date) -> bool:
    """Whether two inclusive ranges share at least one day."""
    return a_start <= b_end and b_start <= a_end


def business_days(start: date, end: date) -> int:
    """Monday to Friday days in the inclusive range."""
    return sum(1 for day in days_between(start, end) if day.weekday() < 5)


def month_end(day: date) -> date:
    first_of_next = (day.replace(day=1) + timedelta(days=32)).replace(day=1)
    return first_of_next - timedelta(days=1)
