"""Redis between the engine instances and their locks, with the nemesis' Redis faults.

Every instance's `RedisLockService` talks to Redis through one `FaultyRedis` client: a
synchronous `redis.Redis` whose every command first passes `RedisFaults.before_command` (in the
worker thread that runs it), where latency and downtime are injected. Keys live under the run's
namespace (`topology.run_namespace`); the run deletes them at start and end and never touches
another key, so runs can share a server (FLUSHALL/FLUSHDB are never used).

What still holds under each fault, and why (the reference engine; docs/seed-design.md):

- `redis_latency` (each command delayed by `value_s` with `probability`): waits grow, and a
  delay longer than the lease lets a lease lapse between grant and work, or a release arrive
  after the lease expired (`lock.lease_lost`). Mutual exclusion may be lost; safety is not:
  status changes are conditional transitions (one winner), seats are a ledger of atomic updates,
  and the purchase slot is claimed by `_id` and fenced with the lease's token.
- `redis_restart` (Redis loses the run's keys, then refuses commands for `value_s`): a held
  lock vanishes, so a second holder enters while the first still works. Tokens survive the loss
  of their counter (`RedisLockService`: `max(INCR, Redis TIME in µs)`), so the newer holder's
  token is still the larger and the fence still orders their slot writes. While Redis is down
  acquisition fails with `LockUnavailable`, which the engine answers as busy (503) before
  writing anything.
- `lease_pause` (simulator/nemesis.py; a holder stalls at its first write past its lease): the
  textbook case for fencing. The stale holder's slot write is refused (duplicate `_id`, moved
  slot, or a newer fence); its seat reservation is given back; it answers busy.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from random import Random
from typing import Any

import anyio.from_thread
import anyio.to_thread
import redis
import redis.exceptions
from redis.backoff import NoBackoff
from redis.retry import Retry

#: fail within about this long when Redis is unreachable (redis-py retries for seconds by default)
SOCKET_TIMEOUT_S = 1.0


class FaultyRedis(redis.Redis):
    """A `redis.Redis` whose commands pass through `faults` first (latency, downtime)."""

    faults: RedisFaults | None = None

    def execute_command(self, *args: Any, **options: Any) -> Any:
        if self.faults is not None and args:
            self.faults.before_command(str(args[0]))  # an injected outage raises here
        try:
            return super().execute_command(*args, **options)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            if self.faults is not None:  # the real server failed: no scenario asked for it
                self.faults.unreachable(exc)
            raise


class RedisFaults:
    """The run's Redis: the faulty client the lock services use, and the fault switches."""

    def __init__(self, url: str, namespace: str, rng: Random, record: Callable[..., Any]) -> None:
        if any(ch in namespace for ch in "*?[]\\"):
            raise ValueError(f"namespace {namespace!r} would be a glob pattern")
        self.url = url
        self.namespace = namespace
        self.record = record
        options: dict[str, Any] = {
            "socket_timeout": SOCKET_TIMEOUT_S,
            "socket_connect_timeout": SOCKET_TIMEOUT_S,
            "retry": Retry(NoBackoff(), 1),
        }
        self.client = FaultyRedis.from_url(url, **options)
        self.client.faults = self
        self._admin = redis.Redis.from_url(url, **options)  # the nemesis' own, never faulted
        self.latency_probability = 0.0
        self.latency_s = 0.0
        self.delayed = 0
        self._rng = rng
        self._rng_lock = threading.Lock()  # commands run in several worker threads at once
        self._down_until = 0.0  # time.monotonic(); commands are refused until then
        self._unreachable = False  # the real server failed (not an injected fault), once said

    # ---- run lifecycle (event loop)

    async def connect(self) -> bool:
        """Clear the namespace (left by a crashed run); record whether Redis answered."""
        try:
            stale = await anyio.to_thread.run_sync(self._delete_namespace)
        except redis.exceptions.RedisError as exc:
            self.record("redis.unreachable", url=self.url, error=f"{type(exc).__name__}: {exc}")
            return False
        self.record("redis.connect", url=self.url, namespace=self.namespace, stale_keys=stale)
        return True

    async def close(self) -> None:
        """Delete the run's keys (best effort) and close both clients."""
        with anyio.CancelScope(shield=True):
            with suppress(redis.exceptions.RedisError):
                await anyio.to_thread.run_sync(self._delete_namespace)
            self.client.close()
            self._admin.close()

    def discard(self) -> None:
        """`close` outside the event loop (the run was interrupted): best effort, bounded."""
        with suppress(redis.exceptions.RedisError, OSError):
            self._delete_namespace()
        with suppress(Exception):
            self.client.close()
            self._admin.close()

    # ---- faults (event loop)

    async def restart(self, downtime_s: float) -> None:
        """Redis restarts without persistence: the run's keys are gone, and for `downtime_s`
        every command is refused (connection error) as if the server were still starting."""
        self._down_until = time.monotonic() + downtime_s
        try:
            lost = await anyio.to_thread.run_sync(self._delete_namespace)
        except redis.exceptions.RedisError as exc:
            self.record("redis.unreachable", url=self.url, error=f"{type(exc).__name__}: {exc}")
            return
        self.record("redis.restart", keys_lost=lost, downtime_s=downtime_s)

    def set_latency(self, probability: float, delay_s: float) -> None:
        self.latency_probability, self.latency_s = probability, delay_s

    # ---- every command (worker thread)

    def before_command(self, command: str) -> None:
        if time.monotonic() < self._down_until:
            raise redis.exceptions.ConnectionError("Redis is restarting (redis_restart fault)")
        probability, delay_s = self.latency_probability, self.latency_s
        if probability <= 0 or delay_s <= 0:
            return
        with self._rng_lock:
            hit = self._rng.random() < probability
        if hit:
            self.delayed += 1
            self._record_from_thread("redis.delay", command=command, delay_s=delay_s)
            time.sleep(delay_s)  # this worker thread only: the event loop keeps running

    def unreachable(self, exc: Exception) -> None:
        """The real Redis failed a command the scenario did not make fail: the run cannot judge
        the engine past this point (simulator/judge.py marks it incomplete). Said once."""
        if self._unreachable:
            return
        self._unreachable = True
        self._record_from_thread(
            "redis.unreachable", url=self.url, error=f"{type(exc).__name__}: {exc}"
        )

    def _record_from_thread(self, kind: str, **fields: Any) -> None:
        # outside an anyio worker thread there is no loop to record on: `delayed` still counts it
        with suppress(RuntimeError):
            anyio.from_thread.run_sync(functools.partial(self.record, kind, **fields))

    def _delete_namespace(self) -> int:
        deleted = 0
        batch: list[bytes] = []
        for key in self._admin.scan_iter(match=f"{self.namespace}*", count=500):
            batch.append(key)
            if len(batch) >= 500:
                deleted += int(self._admin.delete(*batch))
                batch.clear()
        if batch:
            deleted += int(self._admin.delete(*batch))
        return deleted
