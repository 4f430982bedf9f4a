"""Engine instances behind a load balancer, sharing one store; crashes, pauses, rolling deploys.

An instance is one engine object with its own in-memory state (its lock table, if its locks are
per instance). A crash cancels every request it is serving and throws that state away; the
store keeps whatever was written. A pause stalls the instance at its next store call until it
resumes — the stop-the-world stall that lets a lease expire under a holder.

Locks (`Topology.locks`): one in-memory table per instance (the seed's deployment), one shared
table, or Redis: every instance its own `RedisLockService` over one server, under a per-run key
namespace. Redis leases expire in real time, so Redis runs are wall-clock runs (simulator/run.py).
"""

from __future__ import annotations

import itertools
import os
import random
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import anyio
import trio

from reference_impl.errors import PurchaseError
from reference_impl.lock_stats import LockStats
from reference_impl.locks import Lease, LockService
from reference_impl.ports import Engine, EngineEnv, EngineFactory
from reference_impl.redis_locks import RedisLockService
from reference_impl.reference_engine import fence_scope_of
from simulator.engine_class import declared
from simulator.engine_errors import EngineErrors, check_return, is_engine_bug, method_of
from simulator.requests import current_request

#: where Redis runs lock when neither the scenario (`topology.redis_url`) nor REDIS_URL says:
#: db 15, away from the default db 0; runs only ever touch their own namespace's keys
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/15"

_runs = itertools.count(1)
#: the engine methods whose port declares errors (`PurchaseError`: limit reached, busy, ...)
DECLARES_ERRORS = frozenset({"create_purchase", "cancel_purchase"})
#: how much of an escaped exception the history keeps
MAX_FRAMES = 12
MAX_MESSAGE = 500


class InstanceDown(Exception):
    """Connection refused: the request never reached an engine (a definite failure)."""


class InstanceCrashed(Exception):
    """The instance died while serving the request: its outcome is unknown."""


@dataclass
class Instance:
    name: str
    make_env: Callable[[Instance], EngineEnv]
    factory: EngineFactory
    record: Callable[..., Any]
    up: bool = False
    retired: bool = False  # stopped for good (the old side of a rolling deploy)
    engine: Engine | None = None
    env: EngineEnv | None = None
    generation: int = 0
    #: where exceptions escaping the engine are counted (simulator/engine_errors.py)
    errors: EngineErrors | None = None
    # a list, not a set: a set of scopes iterates in memory-address order (non-deterministic)
    _inflight: list[trio.CancelScope] = field(default_factory=list)
    _resumed: anyio.Event | None = None

    def start(self) -> None:
        """(Re)start with fresh in-memory state over the shared store."""
        self.generation += 1
        self.env = self.make_env(self)
        self.engine = self.factory(self.env)
        self.up = True
        self.record("instance.start", instance=self.name, generation=self.generation)

    def crash(self, reason: str) -> None:
        if not self.up:
            return
        self.up = False
        self.record(
            "instance.crash", instance=self.name, reason=reason, inflight=len(self._inflight)
        )
        for scope in list(self._inflight):
            scope.cancel()

    def stop(self) -> None:
        """Graceful stop (end of a rolling deploy): in-flight requests finish, new ones are refused."""
        self.retired = True
        if self.up:
            self.up = False
            self.record("instance.stop", instance=self.name)

    def pause(self) -> None:
        if self._resumed is None:
            self._resumed = anyio.Event()
            self.record("instance.pause", instance=self.name)

    def resume(self) -> None:
        if self._resumed is not None:
            self._resumed.set()
            self._resumed = None
            self.record("instance.resume", instance=self.name)

    async def stall_if_paused(self) -> None:
        if self._resumed is not None:
            await self._resumed.wait()

    async def call(self, fn: Callable[[Engine], Awaitable[Any]]) -> Any:
        if not self.up or self.engine is None:
            raise InstanceDown(f"{self.name} is down")
        scope = trio.CancelScope()  # the simulator runs on trio (simulator/tasks.py)
        self._inflight.append(scope)
        try:
            with scope:
                value = await fn(self.engine)
                check_return(method_of(fn), value)
                return value
        except Exception as exc:
            if self.errors is not None and is_engine_bug(exc):
                self.errors.seen(method_of(fn), exc)
            record_engine_exception(self.record, self.name, method_of(fn), exc)
            raise
        finally:
            self._inflight.remove(scope)
        # only reached when the crash cancelled the request (the scope swallowed it)
        raise InstanceCrashed(f"{self.name} crashed mid-request")


def record_engine_exception(
    record: Callable[..., Any], instance: str, method: str, exc: Exception
) -> None:
    """An exception that escaped an engine method, in the history, for `no_engine_exception`
    (checkers read only the history; simulator/engine_errors.py keeps the full tracebacks for
    the summary): a create or cancel may raise the errors the engine boundary declares
    (`PurchaseError`), nothing else may escape anything. Frames are kept as file:line with the
    file's name only, so the history stays the same bytes on every machine."""
    if isinstance(exc, PurchaseError) and method in DECLARES_ERRORS:
        return
    frames = traceback.extract_tb(exc.__traceback__)[-MAX_FRAMES:]
    record(
        "engine.exception",
        instance=instance,
        method=method,
        request=current_request.get(),
        error=type(exc).__name__,
        message=str(exc)[:MAX_MESSAGE],
        traceback=[f"{os.path.basename(f.filename)}:{f.lineno} in {f.name}" for f in frames],
    )


@dataclass
class Cluster:
    """The load balancer: round robin or random over the instances that are up."""

    instances: list[Instance]
    balancer: str
    rng: random.Random
    _next: int = 0

    def pick(self) -> Instance:
        live = [i for i in self.instances if i.up]
        if not live:
            return self.instances[0]  # refused: InstanceDown
        if self.balancer == "random":
            return live[self.rng.randrange(len(live))]
        self._next += 1
        return live[self._next % len(live)]

    def by_name(self, name: str) -> Instance | None:
        return next((i for i in self.instances if i.name == name), None)

    async def call(self, fn: Callable[[Engine], Awaitable[Any]]) -> tuple[str, Any]:
        instance = self.pick()
        return instance.name, await instance.call(fn)


def memory_locks_for(factory: EngineFactory, honest_stats: Any) -> LockService:
    """The engine's own in-memory lock service (the seed's is buggy), measured honestly."""
    from reference_impl.memory_locks import MemoryLockService
    from reference_impl.seed_locks import SeedLockService

    cls = declared(factory, "memory_lock_service", MemoryLockService)
    if cls is SeedLockService:
        return SeedLockService(true_stats=honest_stats)
    return cls(stats=honest_stats)


def redis_url_for(configured: str | None) -> str:
    """The scenario's `topology.redis_url`, else `REDIS_URL`, else DEFAULT_REDIS_URL."""
    return configured or os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL


def run_namespace(seed: int) -> str:
    """The Redis key prefix of one run: the run seed and this process's run counter.

    The process id keeps apart two processes that run the same seed at once (a parallel suite,
    `explore --workers`); no history line contains it.
    """
    return f"paysim:sim:{seed}:{os.getpid()}.{next(_runs)}:"


def redis_locks_for(
    client: Any,
    *,
    namespace: str,
    lease_s: float,
    stats: LockStats,
    owner: str,
    rng: random.Random,
) -> RedisLockService:
    """One instance's lock service over the run's shared Redis client (a synchronous
    `redis.Redis`: the simulator runs on trio, so each script call runs in a worker thread)."""
    return RedisLockService(
        client,
        lease_s=lease_s,
        stats=stats,
        namespace=namespace,
        rng=rng,
        owner_prefix=owner,  # unique per instance and generation within the namespace
        fence_ttl_s=3600.0,  # a run's fence keys outlive it by an hour at most, if never deleted
    )


@dataclass(eq=False)
class Holding:
    """A lease the current request holds; `wrote` once it reached its first store write."""

    lease: Lease
    wrote: bool = False


#: the innermost lease held by the current request (set by `WatchedLocks`)
HOLDING: ContextVar[Holding | None] = ContextVar("paysim_holding", default=None)


class WatchedLocks:
    """A lock service that marks the requests holding one of its leases, so that the nemesis can
    stall a holder at its first write (`lease_pause`). Used only when a scenario has that fault,
    so other runs schedule exactly as before."""

    def __init__(self, inner: LockService) -> None:
        self.inner = inner

    @property
    def fence_scope(self) -> str | None:
        return fence_scope_of(self.inner)

    def hold(self, key: str, *, wait_timeout: float) -> AbstractAsyncContextManager[Lease]:
        return self._hold(key, wait_timeout)

    @asynccontextmanager
    async def _hold(self, key: str, wait_timeout: float) -> AsyncIterator[Lease]:
        async with self.inner.hold(key, wait_timeout=wait_timeout) as lease:
            marker = HOLDING.set(Holding(lease))
            try:
                yield lease
            finally:
                HOLDING.reset(marker)
