"""Retries with exponential backoff: the delay schedule, jitter, and a retry loop."""

import random
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def delays(attempts: int, base: float = 0.5, factor: float = 2.0, cap: float = 10.0) -> list[float]:
    """The wait before each retry: base, base*factor, base*factor**2, ... never above cap."""
    return [min(cap, base * factor**i) for i in range(attempts)]


def jittered(delay: float, rng: random.Random, spread: float = 0.1) -> float:
    """The delay moved by up to +-spread of itself, so clients do not retry in lockstep."""
    return delay * (1 + rng.uniform(-spread, spread))


def retry(fn: Callable[[], T], attempts: int = 3,
          retry_on: tuple[type[BaseException], ...] = (ConnectionError,),
          sleep: Callable[[float], None] = lambda seconds: None) -> T:
    """Call fn until it succeeds; after `attempts` failed tries the last error propagates."""
    if attempts < 1:
        raise ValueError("attempts must be at least 1")
    waits = delays(attempts - 1)
    for attempt in range(attempts):
        try:
            return fn()
        except retry_on:
            if attempt == attempts - 1:
                raise
            sleep(waits[attempt])
    raise AssertionError("unreachable")
