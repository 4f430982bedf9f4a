"""The seed's `LockService.withLock`, reproduced faithfully in Python, bugs and all.

paysim must find the seed's bugs on its own, so this must behave like the TypeScript, not like a
lock (docs/seed-design.md). The model: one dict `key -> Event` standing for "the promise of the
current holder" (set when the holder's fn settles); no queue; no re-check after waking. The
JavaScript microtask order is kept: the uncontended path installs its entry without yielding, and
a finishing holder deletes the entry before any woken waiter runs and installs its own.

Bugs, each pinned by tests/test_seed_locks.py:

1. No queue, no re-check: a waiter races *the promise it saw* against a timer, and when that
   promise settles it installs its own entry and runs. With three or more callers, every waiter
   that saw the same holder runs at once. Consequence: duplicate pending purchases, double seat
   reservations, double webhook completion.
2. The timeout bounds waiting only: the holder is never stopped, so a request that got
   "Lock timeout after {ms}ms for key: {key}" (HTTP 503) may be followed by the holder's effects.
3. The holder's `finally` deletes the map entry unconditionally, even when a newer holder owns
   it. Consequence: the newer holder runs unguarded; the next caller enters at once beside it,
   and `activeLocks` reads 0 while work is running under the key.
4. `totalWaitTime` is measured from the request until *after* fn finished, so it adds the run
   time (and, for a waiter, the previous holder's remaining run) to the wait; `averageWaitTime`
   is that over `totalLocksAcquired`. Calls that time out, or whose fn throws, are not counted at
   all, so the worst waits vanish from the statistics.

Not modelled (unknown from the facts): whether a holder whose fn rejects makes the waiters'
`Promise.race` reject with the same error; here the waiters just wake. The seed's timer is not
cleared when the holder wins; that only costs memory in Node and is not modelled.

To satisfy `LockService`, `hold` yields a `Lease` whose token comes from one growing counter (the
seed has no tokens; nothing in it checks them). Statistics:

- `seed_stats()`: the seed's own numbers, exactly as it computes them, plus two honest extras.
- `stats` (a `LockStats`, optional): fed *what the seed would report*: one grant per successful
  call with the seed's (wrong) wait, recorded when fn finished; timed-out calls counted in
  `timeouts` but with no wait sample; failed calls not at all. Its listener therefore sees
  "granted" only when a call is over: put history listeners on `true_stats`.
- `true_stats` (a `LockStats`, optional): the honest measurement, as `MemoryLockService` reports
  it (wait = request to entry, hold = entry to exit, timeouts and cancellations included).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import TypeVar

import anyio

from reference_impl.lock_stats import LockStats
from reference_impl.locks import Lease, LockTimeout

T = TypeVar("T")


@dataclass(frozen=True)
class SeedLockStats:
    """The seed's `getStats()`; times in ms. The last two fields are not the seed's."""

    total_locks_acquired: int
    total_wait_time_ms: float
    average_wait_time_ms: float
    active_locks: int
    # honest extras: request-to-entry wait summed over successful calls, and timeouts
    true_total_wait_time_ms: float
    timeouts: int


class SeedLockService:
    """`InMemoryLockService.withLock` of the seed, also usable through the `LockService` port."""

    def __init__(
        self,
        stats: LockStats | None = None,
        now: Callable[[], float] | None = None,
        true_stats: LockStats | None = None,
    ) -> None:
        self.stats = stats
        self.true_stats = true_stats
        default_now = stats.now if stats is not None else anyio.current_time
        self._now: Callable[[], float] = now if now is not None else default_now
        self._locks: dict[str, anyio.Event] = {}
        self._last_token = 0
        self._total_acquired = 0
        self._total_wait_s = 0.0
        self._true_wait_s = 0.0
        self._timeouts = 0

    def hold(self, key: str, *, wait_timeout: float) -> AbstractAsyncContextManager[Lease]:
        return self._hold(key, wait_timeout)

    async def with_lock(self, key: str, fn: Callable[[], Awaitable[T]], timeout_ms: float) -> T:
        """The seed's signature: `withLock(lockKey, operation, timeoutMs)`."""
        async with self.hold(key, wait_timeout=timeout_ms / 1000.0):
            return await fn()

    def seed_stats(self) -> SeedLockStats:
        n = self._total_acquired
        return SeedLockStats(
            total_locks_acquired=n,
            total_wait_time_ms=self._total_wait_s * 1000.0,
            average_wait_time_ms=self._total_wait_s * 1000.0 / n if n else 0.0,
            active_locks=len(self._locks),
            true_total_wait_time_ms=self._true_wait_s * 1000.0,
            timeouts=self._timeouts,
        )

    def active_keys(self) -> set[str]:
        """Keys with an entry in the seed's map (not necessarily every key being run under)."""
        return set(self._locks)

    def __len__(self) -> int:
        return len(self._locks)

    @asynccontextmanager
    async def _hold(self, key: str, wait_timeout: float) -> AsyncIterator[Lease]:
        start = self._now()
        existing = self._locks.get(key)
        if existing is not None:
            await self._race(key, existing, wait_timeout, start)
        # bug 1: no re-check; whoever woke installs its own promise, replacing any other
        done = anyio.Event()
        self._locks[key] = done
        self._last_token += 1
        token = self._last_token
        entered = self._now()
        true_wait = entered - start
        if self.true_stats is not None:
            self.true_stats.granted(key, true_wait, token)
        ok = False
        try:
            yield Lease(key, token)
            ok = True
        finally:
            done.set()  # the promise settles; its waiters run after this task's finally
            finished = self._now()
            if ok:
                # bug 4: the "wait" ends after fn, so it includes the run time
                seed_wait = finished - start
                self._total_acquired += 1
                self._total_wait_s += seed_wait
                self._true_wait_s += true_wait
                if self.stats is not None:
                    self.stats.granted(key, seed_wait, token)
                    self.stats.released(key, finished - entered, token)
            if self.true_stats is not None:
                self.true_stats.released(key, finished - entered, token)
            # bug 3: deletes whatever entry is there now, a newer holder's included
            self._locks.pop(key, None)

    async def _race(
        self, key: str, existing: anyio.Event, wait_timeout: float, start: float
    ) -> None:
        """`Promise.race([existingLock, timeout])`; bug 2: losing it leaves the holder running."""
        for sink in (self.stats, self.true_stats):
            if sink is not None:
                sink.waiting_started(key)
        try:
            with anyio.move_on_after(wait_timeout) as scope:
                await existing.wait()
        except BaseException:
            # cancelled from outside (no such thing in Node): nothing was installed
            if self.stats is not None:
                self.stats.waiter_left(key)
            if self.true_stats is not None:
                self.true_stats.waiter_left(key)
                self.true_stats.cancelled(key, self._now() - start)
            raise
        for sink in (self.stats, self.true_stats):
            if sink is not None:
                sink.waiter_left(key)
        if scope.cancelled_caught:
            self._timeouts += 1
            if self.stats is not None:
                self.stats.timed_out(key, None)  # the seed does not count failed calls
            if self.true_stats is not None:
                self.true_stats.timed_out(key, self._now() - start)
            raise LockTimeout(key, wait_timeout)
