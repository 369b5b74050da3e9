"""Token-bucket rate limiter: bursts of up to `capacity` requests, refilled at `rate`
tokens per second. Time is passed in explicitly so callers (and tests) control the clock."""


class TokenBucket:
    def __init__(self, capacity: int, rate: float) -> None:
        if capacity <= 0 or rate <= 0:
            raise ValueError("capacity and rate must be positive")
        self.capacity = capacity
        self.rate = rate
        self.tokens = float(capacity)
        self.updated = 0.0

    def __repr__(self) -> str:
        return f"TokenBucket(capacity={self.capacity}, rate={self.rate}, tokens={self.tokens})"

    def _refill(self, now: float) -> None:
        elapsed = max(0.0, now - self.updated)
        self.tokens = min(self.capacity, self.tokens + elapsed * self.rate)
        self.updated = now

    def allow(self, now: float, cost: int = 1) -> bool:
        """Take `cost` tokens if there are enough; False (and nothing taken) otherwise."""
        self._refill(now)
        if self.tokens >= cost:
            self.tokens -= cost
            return True
        return False
