"""Idempotency keys as Stripe keeps them: per API key, first outcome saved and replayed for 24 h.

A key seen again with other parameters is refused; a key whose first request is still executing
is refused with 409. Outcomes that never started executing (validation errors, rate limits,
conflicts) are not saved, so a retry with the key runs for real.
"""

from __future__ import annotations

from dataclasses import dataclass

from simulator.fake_stripe.api import Reply

KEY_TTL_S = 24 * 3600.0


@dataclass
class _Entry:
    fingerprint: str
    created: float
    response: Reply | None = None  # None while the first request is in flight


class Conflict(Exception):
    """The key is in use by a request with other parameters (`mismatch`) or still in flight."""

    def __init__(self, *, mismatch: bool) -> None:
        super().__init__("mismatch" if mismatch else "in flight")
        self.mismatch = mismatch


class IdempotencyStore:
    def __init__(self, ttl_s: float = KEY_TTL_S) -> None:
        self._ttl_s = ttl_s
        self._entries: dict[tuple[str, str], _Entry] = {}  # insertion order == creation order

    def begin(self, scope: tuple[str, str], fingerprint: str, now: float) -> Reply | None:
        """The saved response to replay, or None after claiming the key for this request.

        Raises Conflict when the key cannot be used now."""
        self._prune(now)
        entry = self._entries.get(scope)
        if entry is None:
            self._entries[scope] = _Entry(fingerprint, now)
            return None
        if entry.fingerprint != fingerprint:
            raise Conflict(mismatch=True)
        if entry.response is None:
            raise Conflict(mismatch=False)
        return entry.response

    def finish(self, scope: tuple[str, str], response: Reply | None) -> None:
        """Save the outcome, or release the key (None) when the outcome is not kept."""
        entry = self._entries.get(scope)
        if entry is None:
            return
        if response is None:
            del self._entries[scope]
        else:
            entry.response = response

    def __len__(self) -> int:
        return len(self._entries)

    def _prune(self, now: float) -> None:
        while self._entries:
            scope, entry = next(iter(self._entries.items()))
            if now - entry.created < self._ttl_s:
                return
            del self._entries[scope]
