"""A keyed lease lock shared by every engine instance, on Redis, with fencing tokens.

Why: `MemoryLockService` cannot exclude a second instance (docs/seed-design.md, deployment). A Redis
lease (`SET NX PX`) can, but a holder paused past its lease keeps writing after the next holder
entered (docs/seed-design.md), so every grant also returns a fencing token the store checks.

Acquire is one Lua script: if the lock key is free, set it (owner value unique per grant, PX
lease) and return a token strictly greater than every token granted before for that key. Release
is compare-and-delete, extension compare-and-PEXPIRE, so a stale lease can never delete or prolong
the next holder's lock.

Tokens survive the loss of the fence key (restart without persistence, FLUSHALL, eviction): a
token is `max(fence + 1, Redis TIME in microseconds)`, written back to the fence key. Every grant
on a key is at least one round trip after the previous one, so an earlier token never exceeds the
microsecond it was issued in; a lost fence therefore restarts above every earlier token instead
of at 1. The one assumption is that the Redis server's clock does not step back by more than the
gap between two grants while the fence key is lost at the same moment. Because of that floor the
fence key may expire (`fence_ttl_s`), so keys such as per-session webhook locks do not accumulate
forever.

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
Release never raises for Redis and never hangs: with a client socket timeout that bounds it; with
none, the release runs in a shielded scope with its own deadline. A release cancelled mid-call is
finished in such a scope (compare-and-delete can safely run twice), then the cancellation goes on.

Cost: acquire + release is two round trips, as for redis-py's own `Lock` (SET NX PX, then a
release script), and must cost no more (issue #7), though the acquire script does more work in
Redis than a SET. So the client side is lean: scripts run by `EVALSHA` straight through
`execute_command` (redis-py's `Script` wrapper copies arguments and checks for pipelines on every
call), `hold` keeps its grant in the context manager instead of a dict, an anyio cancel scope
(several microseconds) is entered only when a release needs one, and the uncontended path does no
more than the two calls, three clock reads and two statistics records.
"""

from __future__ import annotations

import asyncio
import builtins
import hashlib
import itertools
import random
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import anyio
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
# A lock already held by this same owner value is this grant's own, executed once already: the
# client retried the call after losing its reply (redis-py retries a command once on a timeout).
# It is granted again, with a fresh lease and a new, larger token, instead of being reported as
# held, which would leave the caller waiting out its own lease.
# Returns the token (> 0) when granted, else -2 - the holder's pttl (<= -1, as pttl >= -1): one
# integer rather than a pair, cheaper to parse. The lock is taken first, so a held lock costs only
# SET NX and PTTL; the script is atomic, so the order of the calls inside it changes nothing
# outside. The fence is read and rewritten (GET, SET PX: two calls) rather than INCR,
# SET and PEXPIRE: the TIME floor is above the counter on almost every grant anyway. Tokens stay
# below 2^53 (TIME in microseconds), so Lua's doubles hold them exactly.
_ACQUIRE = """
if redis.replicate_commands then redis.replicate_commands() end
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  if redis.call('GET', KEYS[1]) ~= ARGV[1] then
    return -2 - redis.call('PTTL', KEYS[1])
  end
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
local t = redis.call('TIME')
local token = tonumber(t[1]) * 1000000 + tonumber(t[2])
local last = tonumber(redis.call('GET', KEYS[2]))
if last and last >= token then token = last + 1 end
redis.call('SET', KEYS[2], string.format('%.0f', token), 'PX', ARGV[3])
return token
"""

# KEYS: lock. ARGV: owner. 1 if the owner's lock was deleted, 0 if the key is gone, -1 if another
# owner holds it (0 tells a release retried after an interrupted call that the first one landed).
_RELEASE = """
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then return redis.call('DEL', KEYS[1]) end
if v then return -1 end
return 0
"""

# KEYS: lock. ARGV: owner, lease ms. 1 if the owner's lease was prolonged, 0 if it was lost.
_EXTEND = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""

#: lock keys whose Redis key names are remembered (per user or session: emptied when full)
_KEY_CACHE_SIZE = 4096


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


class _Script:
    """A Lua script run by SHA; its text is loaded only when the server answers NOSCRIPT."""

    __slots__ = ("text", "sha")

    def __init__(self, text: str) -> None:
        self.text = text
        self.sha = hashlib.sha1(text.encode()).hexdigest()


# (Redis lock key, owner value, grant time): what a release needs; a tuple, cheapest to build
_Grant = tuple[str, str, float]


def _socket_timeout(client: Any) -> float | None:
    """The read timeout of the client's connections, if known (a cluster client: unknown)."""
    pool = getattr(client, "connection_pool", None)
    kwargs = getattr(pool, "connection_kwargs", None) or {}
    timeout = kwargs.get("socket_timeout")
    return float(timeout) if timeout else None


def _asyncio_time() -> float:
    """`anyio.current_time()` on asyncio, without its backend lookup (it runs twice per grant)."""
    return asyncio.get_running_loop().time()


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
        self.client = client
        self._threaded = isinstance(client, redis.Redis)
        # the loop's clock (deadlines, sleeps); redis.asyncio runs on asyncio only
        self._loop_time: Callable[[], float] = (
            anyio.current_time if self._threaded else _asyncio_time
        )
        # the statistics' clock: the same function when the stats keep the default clock
        stats_now = self.stats.now
        self._same_clock = stats_now is anyio.current_time
        self._now: Callable[[], float] = self._loop_time if self._same_clock else stats_now
        self._rng = rng if rng is not None else random.Random(0)
        self._lease_ms = max(1, round(lease_s * 1000))
        self._fence_ttl_ms = max(self._lease_ms, round(fence_ttl_s * 1000))
        # script arguments as the bytes redis-py would encode them to on every call
        self._lease_arg = str(self._lease_ms).encode()
        self._fence_arg = str(self._fence_ttl_ms).encode()
        # shielded release and cleanup calls give up after this long (Redis hung, not refusing)
        self._release_bound_s = max(1.0, poll_max_s)
        # A release must neither hang on a hung Redis nor be lost to a cancellation. When the
        # client's own socket timeout bounds every call, the release runs unscoped (an anyio
        # cancel scope costs as much as the rest of a release's Python) and only a cancelled one
        # is finished in a shielded scope; otherwise every release runs in that scope.
        self._bounded = not self._threaded and _socket_timeout(client) is not None
        # unique per grant: a per-service random prefix (not the `random` module) and a counter
        self._owner_prefix = owner_prefix if owner_prefix is not None else secrets.token_hex(8)
        self._seq = itertools.count(1)
        self._acquire_script = _Script(_ACQUIRE)
        self._release_script = _Script(_RELEASE)
        self._extend_script = _Script(_EXTEND)
        self._redis_keys: dict[str, tuple[str, str]] = {}
        self._held: dict[Lease, _Grant] = {}  # grants from `acquire`, until `release`

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
        lease, grant = await self._acquire(key, wait_timeout)
        self._held[lease] = grant
        return lease

    async def release(self, lease: Lease) -> bool:
        """Give `lease` back; False (never an exception) if it had expired or Redis is down."""
        return await self._release(lease, self._held.pop(lease))

    # -- internals ----------------------------------------------------------------------------

    async def _acquire(self, key: str, wait_timeout: float) -> tuple[Lease, _Grant]:
        # no checkpoint of its own: the script call is one (a cancellation pending on entry lands
        # there, and the cleanup below deletes a grant that landed with it)
        requested_at = self._now()
        loop_start = requested_at if self._same_clock else self._loop_time()
        lock_key, fence_key = self._keys(key)
        script = self._acquire_script
        waiting = False
        attempt = 0
        try:
            while True:
                owner = f"{self._owner_prefix}:{next(self._seq)}"
                self.attempts += 1
                try:
                    reply = await self._eval(
                        script, b"2", lock_key, fence_key, owner, self._lease_arg, self._fence_arg
                    )
                except _UNREACHABLE as exc:
                    raise LockUnavailable(
                        f"Redis unreachable while locking {lock_key}: {exc}"
                    ) from exc
                except BaseException:
                    # cancelled mid-call: the grant may have landed; delete it now, not at expiry
                    await self._delete_if_owner(lock_key, owner)
                    raise
                if reply > 0:
                    break
                if not waiting:
                    waiting = True
                    self.stats.waiting_started(key)
                remaining = loop_start + wait_timeout - self._loop_time()
                if remaining <= 0:
                    raise LockTimeout(key, wait_timeout)
                await anyio.sleep(min(self._backoff(attempt, -2 - reply), remaining))
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
        token = int(reply)
        self.stats.granted(key, granted_at - requested_at, token)
        return Lease(key, token), (lock_key, owner, granted_at)

    async def _release(self, lease: Lease, grant: _Grant) -> bool:
        lock_key, owner, granted_at = grant
        try:
            if self._bounded:
                reply: int | None = await self._eval(self._release_script, b"1", lock_key, owner)
            else:
                reply = await self._delete_if_owner(lock_key, owner)
        except _UNREACHABLE:
            reply = None
        except anyio.get_cancelled_exc_class():
            # cancelled mid-call: the delete may or may not have run; finish it shielded (the
            # script deletes only this grant's value, so running it twice is harmless)
            reply = await self._delete_if_owner(lock_key, owner)
            self._record_release(lease, granted_at, reply, retried=True)
            raise
        return self._record_release(lease, granted_at, reply, retried=False)

    def _record_release(
        self, lease: Lease, granted_at: float, reply: int | None, retried: bool
    ) -> bool:
        """Count and report a release from the script's reply (None: Redis did not answer)."""
        hold_s = self._now() - granted_at
        # after an interrupted call, "key gone" is most likely that call's own delete
        if reply == 1 or (retried and reply == 0):
            self.stats.released(lease.key, hold_s, lease.token)
            return True
        if reply is None:
            outcome = "release_failed"
            self.failed_releases += 1
        else:
            outcome = "lease_lost"
            self.lost_leases += 1
        if self.stats.on_event is not None:
            family = key_family(lease.key)
            self.stats.on_event(outcome, lease.key, family, None, hold_s, lease.token)
        self.stats.released(lease.key, hold_s, lease.token)
        return False

    async def _delete_if_owner(self, lock_key: str, owner: str) -> int | None:
        """Compare-and-delete shielded from outside cancellation and bounded by its own deadline
        (one scope for both); None if Redis did not answer in time."""
        deadline = self._loop_time() + self._release_bound_s
        with anyio.CancelScope(shield=True, deadline=deadline):
            try:
                return int(await self._eval(self._release_script, b"1", lock_key, owner))
            except _UNREACHABLE:
                pass
        return None

    def _keys(self, key: str) -> tuple[str, str]:
        """Redis key names of `key`'s lock and fence, remembered: a key is taken again and again."""
        keys = self._redis_keys.get(key)
        if keys is None:
            if len(self._redis_keys) >= _KEY_CACHE_SIZE:
                self._redis_keys.clear()
            # one hash tag for both keys, so the script also runs on Redis Cluster
            lock_key = f"{self.namespace}{{{key}}}"
            keys = self._redis_keys[key] = (lock_key, f"{lock_key}:fence")
        return keys

    def _backoff(self, attempt: int, holder_pttl_ms: int) -> float:
        """Equal jitter: half the exponential step fixed, half random; never past the lease."""
        step = min(self.poll_max_s, self.poll_initial_s * 2 ** min(attempt, 32))
        delay = step / 2 + self._rng.uniform(0, step / 2)
        if holder_pttl_ms > 0:
            delay = min(delay, holder_pttl_ms / 1000)
        return delay

    async def _keep_extending(self, lease: Lease) -> None:
        """Renew every lease/3 while the holder works; stop once the lease is found lost."""
        lock_key, owner, _ = self._held[lease]
        while True:
            await anyio.sleep(self.lease_s / 3)
            try:
                ok = await self._eval(self._extend_script, b"1", lock_key, owner, self._lease_arg)
            except _UNREACHABLE:
                continue  # the lease still runs; try again at the next tick
            if not ok:
                return

    async def _eval(self, script: _Script, *numkeys_keys_args: Any) -> Any:
        """EVALSHA through `execute_command` (client retries and errors as for any command).

        NOSCRIPT (a restarted or flushed server) loads the script and runs it once more.
        """
        if self._threaded:
            return await anyio.to_thread.run_sync(self._eval_sync, script, numkeys_keys_args)
        client: Any = self.client
        try:
            return await client.execute_command("EVALSHA", script.sha, *numkeys_keys_args)
        except redis.exceptions.NoScriptError:
            await client.script_load(script.text)
            return await client.execute_command("EVALSHA", script.sha, *numkeys_keys_args)

    def _eval_sync(self, script: _Script, numkeys_keys_args: tuple[Any, ...]) -> Any:
        """`_eval` for a synchronous client, in a worker thread."""
        client: Any = self.client
        try:
            return client.execute_command("EVALSHA", script.sha, *numkeys_keys_args)
        except redis.exceptions.NoScriptError:
            client.script_load(script.text)
            return client.execute_command("EVALSHA", script.sha, *numkeys_keys_args)


class _Held:
    """`async with service.hold(key, ...)` without extension: acquire, then release on exit.

    The grant stays here rather than in the service's dict: one hash and two dict updates less.
    """

    __slots__ = ("_service", "_key", "_wait_timeout", "_lease", "_grant")

    def __init__(self, service: RedisLockService, key: str, wait_timeout: float) -> None:
        self._service = service
        self._key = key
        self._wait_timeout = wait_timeout

    async def __aenter__(self) -> Lease:
        self._lease, self._grant = await self._service._acquire(self._key, self._wait_timeout)
        return self._lease

    async def __aexit__(self, *exc_info: object) -> None:
        await self._service._release(self._lease, self._grant)
