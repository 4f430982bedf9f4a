"""A correct in-process keyed lock: what the seed's `withLock` should have been.

Per key: one holder and a FIFO queue of waiters. The releasing holder hands the key directly to
the first waiter (it never becomes free in between, so no late arrival can barge in), which makes
grants FIFO and the number of waiters irrelevant to correctness.

Cancellation safety: a waiter that times out or is cancelled removes itself from the queue. If a
grant reached a waiter that is being cancelled from outside (granted, then woken by the
cancellation rather than the grant), it passes the key on to the next waiter, so a grant is never
lost nor kept by a task that will not run; a grant that races the waiter's own deadline is simply
kept. A key's entry is dropped as soon as it is released with nobody waiting.

Fencing tokens come from one counter for the whole service: they strictly increase per key (and
across keys) even after a key's entry was dropped, with no per-key memory that would grow with
every session id ever locked.

Not reentrant: a task holding a key that asks for it again waits for itself until its timeout.
Single instance only: two engine instances with their own `MemoryLockService` do not exclude each
other (docs/seed-design.md, deployment).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field

import anyio
import anyio.lowlevel

from reference_impl.lock_stats import LockStats
from reference_impl.locks import Lease, LockTimeout


@dataclass(eq=False)
class _Waiter:
    event: anyio.Event = field(default_factory=anyio.Event)
    state: str = "waiting"  # waiting -> granted | abandoned
    token: int = 0
    granted_at: float = 0.0


@dataclass(eq=False)
class _Entry:
    """Exists exactly while the key is held."""

    waiters: deque[_Waiter] = field(default_factory=deque)


class MemoryLockService:
    """Keyed, FIFO-fair, cancellation-safe lock for one process; implements `LockService`."""

    def __init__(
        self, stats: LockStats | None = None, now: Callable[[], float] | None = None
    ) -> None:
        self.stats = stats if stats is not None else LockStats(now=now)
        self._now: Callable[[], float] = now if now is not None else self.stats.now
        self._entries: dict[str, _Entry] = {}
        self._last_token = 0

    def hold(self, key: str, *, wait_timeout: float) -> AbstractAsyncContextManager[Lease]:
        return _Hold(self, key, wait_timeout)

    def active_keys(self) -> set[str]:
        """Keys currently held (each possibly with waiters)."""
        return set(self._entries)

    def waiters(self, key: str) -> int:
        entry = self._entries.get(key)
        return len(entry.waiters) if entry is not None else 0

    def __len__(self) -> int:
        return len(self._entries)

    def _next_token(self) -> int:
        self._last_token += 1
        return self._last_token

    async def _acquire(self, key: str, wait_timeout: float) -> tuple[int, float]:
        """Token and grant time; the caller owns the key until `_release_held`."""
        # an already-cancelled caller must not take the key; no yield otherwise, so the
        # order of calls to `hold` is the order of requests
        await anyio.lowlevel.checkpoint_if_cancelled()
        requested_at = self._now()
        entry = self._entries.get(key)
        if entry is None:
            self._entries[key] = _Entry()
            token, granted_at = self._next_token(), requested_at
        else:
            token, granted_at = await self._wait(key, entry, wait_timeout, requested_at)
        try:
            if entry is not None:
                self.stats.waiter_left(key)
            self.stats.granted(key, granted_at - requested_at, token)
        except BaseException:
            self._release_held(key, token, granted_at)
            raise
        return token, granted_at

    def _release_held(self, key: str, token: int, granted_at: float) -> None:
        self._release(key)
        self.stats.released(key, self._now() - granted_at, token)

    async def _wait(
        self, key: str, entry: _Entry, wait_timeout: float, requested_at: float
    ) -> tuple[int, float]:
        waiter = _Waiter()
        entry.waiters.append(waiter)
        self.stats.waiting_started(key)
        try:
            with anyio.move_on_after(wait_timeout):
                await waiter.event.wait()
        except BaseException:
            # cancelled from outside (or worse): leave no trace, pass on a grant that raced in
            self._abandon(key, entry, waiter)
            self.stats.waiter_left(key)
            self.stats.cancelled(key, self._now() - requested_at)
            raise
        if waiter.state == "waiting":
            # our own deadline passed with no grant. (A grant that raced the deadline is kept:
            # it is ours, and nobody else was kept out by it.)
            self._abandon(key, entry, waiter)
            self.stats.waiter_left(key)
            self.stats.timed_out(key, self._now() - requested_at)
            raise LockTimeout(key, wait_timeout)
        return waiter.token, waiter.granted_at

    def _abandon(self, key: str, entry: _Entry, waiter: _Waiter) -> None:
        if waiter.state == "granted":
            waiter.state = "abandoned"
            self._release(key)
        elif waiter.state == "waiting":
            waiter.state = "abandoned"
            entry.waiters.remove(waiter)

    def _release(self, key: str) -> None:
        """Hand the key to the first waiter, or drop the entry when nobody waits."""
        entry = self._entries[key]
        if entry.waiters:
            waiter = entry.waiters.popleft()
            waiter.state = "granted"
            waiter.token = self._next_token()
            waiter.granted_at = self._now()
            waiter.event.set()
        else:
            del self._entries[key]


class _Hold:
    """`async with service.hold(key, ...)`: a plain class, not a generator-based context manager,
    since one is entered for every lock request (same awaits, in the same order)."""

    __slots__ = ("_service", "_key", "_wait_timeout", "_token", "_granted_at")

    def __init__(self, service: MemoryLockService, key: str, wait_timeout: float) -> None:
        self._service = service
        self._key = key
        self._wait_timeout = wait_timeout

    async def __aenter__(self) -> Lease:
        self._token, self._granted_at = await self._service._acquire(self._key, self._wait_timeout)
        return Lease(self._key, self._token)

    async def __aexit__(self, *exc_info: object) -> None:
        self._service._release_held(self._key, self._token, self._granted_at)
