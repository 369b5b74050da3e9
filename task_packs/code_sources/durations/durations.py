"""Human-readable durations: seconds to '1h 02m 03s' and back."""

import re

UNITS = {"h": 3600, "m": 60, "s": 1}


def format_duration(seconds: int) -> str:
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m {secs:02d}s"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def parse_duration(text: str) -> int:
    """'1h 2m 3s' -> 3723; anything but number+unit groups is rejected."""
    parts = re.findall(r"(\d+)\s*([hms])", text)
    if not parts or "".join(n + u for n, u in parts) != re.sub(r"\s+", "", text):
        raise ValueError(f"not a duration: {text!r}")
    return sum(int(n) * UNITS[u] for n, u in parts)
