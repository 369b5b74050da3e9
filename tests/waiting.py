"""Waiting for an outcome in a test: poll until it holds, fail (naming it) after a deadline.
The deadline only bounds a hang; nothing is asserted about how long it took."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest

DEADLINE_S = 10.0


async def eventually(condition: Callable[[], Awaitable[bool] | bool], what: str,
                     deadline_s: float = DEADLINE_S) -> None:
    """Poll ``condition`` (a value or an awaitable) until it holds."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        result = condition()
        if await result if isinstance(result, Awaitable) else result:
            return
        await asyncio.sleep(0.02)
    pytest.fail(f"not within {deadline_s}s: {what}")
