"""Idempotency keys as Stripe keeps them: per API key, first outcome saved and replayed for 24 h.

A key seen again with other parameters is refused; a key whose first request is still executing
is refused with 409. Outcomes that never started executing (validation errors, rate limits,
conflicts) are not saved, so a retry with the key runs for real.

What is kept is compact: the request's parameters as a SHA-256 digest of their canonical form
(two requests match exactly when their forms are equal), and, once a run attaches a `Spill`,
saved outcomes on disk rather than in memory (only requests in flight stay in memory). Either
way a key is usable exactly while `now - created < ttl`, as before.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from simulator.fake_stripe.api import Reply
from simulator.fake_stripe.spill import IdempotencyTable

KEY_TTL_S = 24 * 3600.0


@dataclass(slots=True)
class _Entry:
    fingerprint: bytes
    created: float
    response: Reply | None = None  # None while the first request is in flight


class Conflict(Exception):
    """The key is in use by a request with other parameters (`mismatch`) or still in flight."""

    def __init__(self, *, mismatch: bool) -> None:
        super().__init__("mismatch" if mismatch else "in flight")
        self.mismatch = mismatch


def digest(fingerprint: bytes) -> bytes:
    return hashlib.sha256(fingerprint).digest()


class IdempotencyStore:
    def __init__(self, ttl_s: float = KEY_TTL_S) -> None:
        self._ttl_s = ttl_s
        self._entries: dict[tuple[str, str], _Entry] = {}  # insertion order == creation order
        self._disk: IdempotencyTable | None = None
        self._disk_pruned_at = float("-inf")

    def spill_to(self, table: IdempotencyTable) -> None:
        """Keep saved outcomes in `table` from now on (in-flight requests stay in memory)."""
        for scope, entry in list(self._entries.items()):
            if entry.response is not None:
                self._save(scope, entry)
                del self._entries[scope]
        self._disk = table

    def begin(self, scope: tuple[str, str], fingerprint: bytes, now: float) -> Reply | None:
        """The saved response to replay, or None after claiming the key for this request.

        Raises Conflict when the key cannot be used now."""
        self._prune(now)
        entry = self._entries.get(scope)
        if entry is None and self._disk is not None:
            entry = self._load(scope, now)
        key = digest(fingerprint)
        if entry is None:
            self._entries[scope] = _Entry(key, now)
            return None
        if entry.fingerprint != key:
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
        elif self._disk is not None:
            entry.response = response
            self._save(scope, entry)
            del self._entries[scope]
        else:
            entry.response = response

    def __len__(self) -> int:
        return len(self._entries) + (len(self._disk) if self._disk is not None else 0)

    def _prune(self, now: float) -> None:
        while self._entries:
            scope, entry = next(iter(self._entries.items()))
            if now - entry.created < self._ttl_s:
                break
            del self._entries[scope]
        if self._disk is not None and now - self._disk_pruned_at >= 3600.0:
            # only to bound the file: `_load` checks every key's age itself. The hour of margin
            # keeps float rounding at the boundary out of the way
            self._disk_pruned_at = now
            self._disk.prune(now - self._ttl_s - 3600.0)

    # ---- on disk

    def _save(self, scope: tuple[str, str], entry: _Entry) -> None:
        assert self._disk is not None and entry.response is not None
        reply = entry.response
        self._disk.put(
            _scope_key(scope),
            entry.fingerprint,
            entry.created,
            reply.status,
            reply.body,
            reply.headers,
        )

    def _load(self, scope: tuple[str, str], now: float) -> _Entry | None:
        assert self._disk is not None
        row = self._disk.get(_scope_key(scope))
        if row is None:
            return None
        fingerprint, created, status, body, headers = row
        if not now - created < self._ttl_s:
            self._disk.delete(_scope_key(scope))
            return None
        return _Entry(fingerprint, created, Reply(status, body, headers))


def _scope_key(scope: tuple[str, str]) -> str:
    api_key, key = scope
    return f"{len(api_key)}:{api_key}{key}"
