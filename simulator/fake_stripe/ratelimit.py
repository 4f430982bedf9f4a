"""Stripe's request rate limit as a token bucket refilled in virtual time."""

from __future__ import annotations


class TokenBucket:
    """`rate` requests per second with a burst of one second's worth; the rate is passed on
    every call because the nemesis may change it mid-run."""

    def __init__(self) -> None:
        self._tokens: float | None = None
        self._at = 0.0

    def take(self, rate: float | None, now: float) -> bool:
        if rate is None:
            self._tokens = None
            return True
        capacity = max(rate, 1.0)
        if self._tokens is None:
            self._tokens = capacity
        else:
            self._tokens = min(capacity, self._tokens + (now - self._at) * rate)
        self._at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False
