"""A keyed lease lock shared by every engine instance, on Redis, with fencing tokens.

Why: `MemoryLockService` cannot exclude a second instance (SEED_FACTS.md, Deployment). A Redis
lease (`SET NX PX`) can, but a holder paused past its lease keeps writing after the next holder
entered (SEED_FACTS.md §C), so every grant also returns a fencing token the store checks.

Acquire is one Lua script: if the lock key is free, set it (owner value unique per grant, PX
lease) and return a token strictly greater than every token granted before for that key. Release
is compare-and-delete, extension compare-and-PEXPIRE, so a stale lease can never delete or prolong
the next holder's lock.

Tokens survive the loss of the fence key (restart without persistence, FLUSHALL, eviction): a
token is `max(INCR fence, Redis TIME in microseconds)`. Every grant on a key is at least one round
trip after the previous one, so an earlier token never exceeds the microsecond it was issued in;
a fresh counter therefore restarts above every earlier token instead of at 1. The one assumption
is that the Redis server's clock does not step back by more than the gap between two grants while
the fence key is lost at the same moment. Because of that floor the fence key may expire
(`fence_ttl_s`), so keys such as per-session webhook locks do not accumulate forever.

Waiting polls, but not hard: exponential back-off with equal jitter from `poll_initial_s` up to
`poll_max_s`, never sleeping past the holder's remaining lease nor past the caller's deadline.
Grants are not FIFO: a newcomer may take a key a sleeping waiter was about to retry.

Async backends: `redis.asyncio` runs on asyncio only, so with a `redis.asyncio.Redis` client this
service runs under `anyio.run(..., backend="asyncio")` (Redis runs are wall-clock load runs).
Given a synchronous `redis.Redis` client instead, each script call runs in a worker thread
(`anyio.to_thread`) and the service works on trio as well.

Redis unreachable: a `ConnectionError`/`TimeoutError` from redis-py becomes `LockUnavailable`.
A grant whose reply was lost (or whose caller was cancelled mid-call) expires by its lease; the
cancelled case is also deleted at once, best effort. Configure the client's own retries and
socket timeouts (see `connect`): redis-py's defaults retry a refused connection for seconds.
"""

from __future__ import annotations

import builtins
import functools
import itertools
import random
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.lowlevel
import anyio.to_thread
import redis
import redis.asyncio
import redis.exceptions
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff

from reference_impl.lock_stats import LockStats
from reference_impl.locks import Lease, LockTimeout, LockUnavailable, key_family

# Errors that mean "Redis cannot be reached / cannot serve writes now", never a bug of ours.
_UNREACHABLE: tuple[type[BaseException], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.ReadOnlyError,
    builtins.TimeoutError,
    OSError,
)

# KEYS: lock, fence. ARGV: owner, lease ms, fence ttl ms.
# Returns the token (> 0) when granted, else -2 - the holder's pttl (<= -1, as pttl >= -1): one
# integer rather than a pair, cheaper to parse. The lock is taken first (SET NX: one call when it
# is free, the common case); the script is atomic, so the order of the calls inside it changes
# nothing outside.
_ACQUIRE = """
if redis.replicate_commands then redis.replicate_commands() end
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return -2 - redis.call('PTTL', KEYS[1])
end
local t = redis.call('TIME')
local floor = tonumber(t[1]) * 1000000 + tonumber(t[2])
local token = redis.call('INCR', KEYS[2])
if token < floor then
  token = floor
  redis.call('SET', KEYS[2], string.format('%.0f', floor))
end
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return token
"""

# KEYS: lock. ARGV: owner. 1 if the owner's lock was deleted, 0 if it was not the owner's.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS: lock. ARGV: owner, lease ms. 1 if the owner's lease was prolonged, 0 if it was lost.
_EXTEND = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""


def connect(url: str, *, socket_timeout: float = 1.0, retries: int = 1) -> redis.asyncio.Redis:
    """An asyncio client that fails within about `socket_timeout` when Redis is down.

    redis-py's default retries a refused connection ten times with back-off (about 4 s here);
    the lock's own polling already retries, so one immediate retry is enough.
    """
    return redis.asyncio.Redis.from_url(
        url,
        socket_timeout=socket_timeout,
        socket_connect_timeout=socket_timeout,
        retry=AsyncRetry(NoBackoff(), retries),
    )


@dataclass
class _Grant:
    lock_key: str
    owner: str
    granted_at: float


class RedisLockService:
    """Keyed lease lock across processes with fencing tokens; implements `LockService`."""

    def __init__(
        self,
        client: redis.asyncio.Redis | redis.Redis,
        *,
        lease_s: float = 30.0,
        stats: LockStats | None = None,
        extend: bool = False,
        poll_initial_s: float = 0.005,
        poll_max_s: float = 0.1,
        namespace: str = "paysim:lock:",
        rng: random.Random | None = None,
        fence_ttl_s: float = 7 * 24 * 3600.0,
        owner_prefix: str | None = None,
    ) -> None:
        if lease_s <= 0 or poll_initial_s <= 0 or poll_max_s < poll_initial_s:
            raise ValueError("need lease_s > 0 and 0 < poll_initial_s <= poll_max_s")
        self.stats = stats if stats is not None else LockStats()
        self.lease_s = lease_s
        self.extend = extend
        self.poll_initial_s = poll_initial_s
        self.poll_max_s = poll_max_s
        self.namespace = namespace
        self.lost_leases = 0  # released after the lease had expired or been taken over
        self.failed_releases = 0  # Redis unreachable at release; the lease expires on its own
        self.attempts = 0  # acquire scripts run, retries included (shows how hard waiters poll)
        self._now: Callable[[], float] = self.stats.now
        self._rng = rng if rng is not None else random.Random(0)
        self._lease_ms = max(1, round(lease_s * 1000))
        self._fence_ttl_ms = max(self._lease_ms, round(fence_ttl_s * 1000))
        # unique per grant: a per-service random prefix (not the `random` module) and a counter
        self._owner_prefix = owner_prefix if owner_prefix is not None else secrets.token_hex(8)
        self._seq = itertools.count(1)
        self._threaded = isinstance(client, redis.Redis)
        self._acquire_script = client.register_script(_ACQUIRE)
        self._release_script = client.register_script(_RELEASE)
        self._extend_script = client.register_script(_EXTEND)
        self._held: dict[Lease, _Grant] = {}

    # -- the port ---------------------------------------------------------------------------

    def hold(self, key: str, *, wait_timeout: float) -> AbstractAsyncContextManager[Lease]:
        if not self.extend:
            return _Held(self, key, wait_timeout)
        return self._hold_extending(key, wait_timeout)

    @asynccontextmanager
    async def _hold_extending(self, key: str, wait_timeout: float) -> AsyncIterator[Lease]:
        lease = await self.acquire(key, wait_timeout)
        # the body's exception is re-raised outside the task group so that callers see it as
        # is, not wrapped in an ExceptionGroup
        error: BaseException | None = None
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._keep_extending, lease)
                try:
                    yield lease
                except BaseException as exc:
                    error = exc
                finally:
                    tg.cancel_scope.cancel()
        finally:
            await self.release(lease)
        if error is not None:
            raise error

    # -- acquire / release, also usable directly (no extension) -------------------------------

    async def acquire(self, key: str, wait_timeout: float) -> Lease:
        """Wait up to `wait_timeout` s for `key`; LockTimeout, or LockUnavailable if Redis is down."""
        await anyio.lowlevel.checkpoint_if_cancelled()
        loop_now = anyio.current_time()
        requested_at = loop_now if self._now is anyio.current_time else self._now()
        deadline = loop_now + wait_timeout
        lock_key, fence_key = self._keys(key)
        waiting = False
        attempt = 0
        try:
            while True:
                owner = f"{self._owner_prefix}:{next(self._seq)}"
                token, holder_pttl_ms = await self._try_acquire(lock_key, fence_key, owner)
                if token is not None:
                    break
                if not waiting:
                    waiting = True
                    self.stats.waiting_started(key)
                remaining = deadline - anyio.current_time()
                if remaining <= 0:
                    raise LockTimeout(key, wait_timeout)
                await anyio.sleep(min(self._backoff(attempt, holder_pttl_ms), remaining))
                attempt += 1
        except LockTimeout:
            self.stats.waiter_left(key)
            self.stats.timed_out(key, self._now() - requested_at)
            raise
        except LockUnavailable:
            if waiting:
                self.stats.waiter_left(key)
            raise
        except BaseException:
            if waiting:
                self.stats.waiter_left(key)
                self.stats.cancelled(key, self._now() - requested_at)
            raise
        granted_at = self._now()
        if waiting:
            self.stats.waiter_left(key)
        self.stats.granted(key, granted_at - requested_at, token)
        lease = Lease(key, token)
        self._held[lease] = _Grant(lock_key, owner, granted_at)
        return lease

    async def release(self, lease: Lease) -> bool:
        """Give `lease` back; False (never an exception) if it had expired or Redis is down."""
        grant = self._held.pop(lease)
        outcome = "release_failed"  # unless Redis answers in time
        # shielded from outside cancellation, bounded by its own deadline (one scope for both)
        deadline = anyio.current_time() + max(1.0, self.poll_max_s)
        with anyio.CancelScope(shield=True, deadline=deadline):
            try:
                deleted = await self._call(self._release_script, [grant.lock_key], [grant.owner])
                outcome = "released" if deleted else "lease_lost"
            except _UNREACHABLE:
                pass
        hold_s = self._now() - grant.granted_at
        if outcome == "lease_lost":
            self.lost_leases += 1
        elif outcome == "release_failed":
            self.failed_releases += 1
        if outcome != "released" and self.stats.on_event is not None:
            family = key_family(lease.key)
            self.stats.on_event(outcome, lease.key, family, None, hold_s, lease.token)
        self.stats.released(lease.key, hold_s, lease.token)
        return outcome == "released"

    # -- internals ----------------------------------------------------------------------------

    def _keys(self, key: str) -> tuple[str, str]:
        # one hash tag for both keys, so the script also runs on Redis Cluster
        lock_key = f"{self.namespace}{{{key}}}"
        return lock_key, f"{lock_key}:fence"

    def _backoff(self, attempt: int, holder_pttl_ms: int) -> float:
        """Equal jitter: half the exponential step fixed, half random; never past the lease."""
        step = min(self.poll_max_s, self.poll_initial_s * 2 ** min(attempt, 32))
        delay = step / 2 + self._rng.uniform(0, step / 2)
        if holder_pttl_ms > 0:
            delay = min(delay, holder_pttl_ms / 1000)
        return delay

    async def _try_acquire(
        self, lock_key: str, fence_key: str, owner: str
    ) -> tuple[int | None, int]:
        args = [owner, self._lease_ms, self._fence_ttl_ms]
        self.attempts += 1
        try:
            reply = int(await self._call(self._acquire_script, [lock_key, fence_key], args))
        except _UNREACHABLE as exc:
            raise LockUnavailable(f"Redis unreachable while locking {lock_key}: {exc}") from exc
        except BaseException:
            # cancelled mid-call: the grant may have landed; delete it now rather than at expiry
            with anyio.CancelScope(shield=True), anyio.move_on_after(1.0), suppress(_UNREACHABLE):
                await self._call(self._release_script, [lock_key], [owner])
            raise
        return (reply, 0) if reply > 0 else (None, -2 - reply)

    async def _keep_extending(self, lease: Lease) -> None:
        """Renew every lease/3 while the holder works; stop once the lease is found lost."""
        grant = self._held[lease]
        while True:
            await anyio.sleep(self.lease_s / 3)
            try:
                ok = await self._call(
                    self._extend_script, [grant.lock_key], [grant.owner, self._lease_ms]
                )
            except _UNREACHABLE:
                continue  # the lease still runs; try again at the next tick
            if not ok:
                return

    async def _call(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        if self._threaded:
            return await anyio.to_thread.run_sync(functools.partial(script, keys=keys, args=args))
        return await script(keys=keys, args=args)


class _Held:
    """`async with service.hold(key, ...)` without extension: acquire, then release on exit."""

    __slots__ = ("_service", "_key", "_wait_timeout", "_lease")

    def __init__(self, service: RedisLockService, key: str, wait_timeout: float) -> None:
        self._service = service
        self._key = key
        self._wait_timeout = wait_timeout

    async def __aenter__(self) -> Lease:
        self._lease = await self._service.acquire(self._key, self._wait_timeout)
        return self._lease

    async def __aexit__(self, *exc_info: object) -> None:
        await self._service.release(self._lease)
