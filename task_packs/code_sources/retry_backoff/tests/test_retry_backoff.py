import random

import pytest

from retry_backoff import delays, jittered, retry


class Flaky:
    def __init__(self, failures, error=ConnectionError):
        self.failures = failures
        self.error = error
        self.calls = 0

    def __repr__(self):
        return f"Flaky(failures={self.failures}, calls={self.calls})"

    def __call__(self):
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error("down")
        return "ok"


def test_delays_double():
    assert delays(4) == [0.5, 1.0, 2.0, 4.0]


def test_delays_are_capped():
    assert delays(6, base=1.0, cap=8.0) == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


def test_retry_until_success():
    waits = []
    assert retry(Flaky(2), sleep=waits.append) == "ok"
    assert waits == [0.5, 1.0]


def test_retry_gives_up():
    flaky = Flaky(10)
    with pytest.raises(ConnectionError):
        retry(flaky, attempts=3)
    assert flaky.calls == 3


def test_single_attempt_does_not_retry():
    flaky = Flaky(1)
    with pytest.raises(ConnectionError):
        retry(flaky, attempts=1)
    assert flaky.calls == 1


def test_other_errors_are_not_retried():
    flaky = Flaky(1, error=KeyError)
    with pytest.raises(KeyError):
        retry(flaky)
    assert flaky.calls == 1


def test_jitter_stays_within_spread():
    rng = random.Random(7)
    assert all(0.9 <= jittered(1.0, rng) <= 1.1 for _ in range(50))
