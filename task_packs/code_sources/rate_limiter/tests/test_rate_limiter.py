import pytest

from rate_limiter import TokenBucket


def test_burst_up_to_capacity():
    bucket = TokenBucket(3, 1.0)
    assert [bucket.allow(0.0) for _ in range(4)] == [True, True, True, False]


def test_refills_over_time():
    bucket = TokenBucket(2, 0.5)
    assert bucket.allow(0.0) and bucket.allow(0.0)
    assert not bucket.allow(1.0)
    assert bucket.allow(2.0)


def test_never_holds_more_than_capacity():
    bucket = TokenBucket(2, 10.0)
    assert bucket.allow(100.0)
    assert bucket.tokens == 1.0


def test_cost_can_use_every_token():
    bucket = TokenBucket(5, 1.0)
    assert bucket.allow(0.0, cost=5)
    assert not bucket.allow(0.0)


def test_clock_going_backwards_does_not_drain():
    bucket = TokenBucket(2, 1.0)
    assert bucket.allow(5.0)
    assert bucket.allow(3.0)


def test_rejects_zero_capacity():
    with pytest.raises(ValueError):
        TokenBucket(0, 1.0)
