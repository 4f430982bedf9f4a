"""Engine instances behind a load balancer, sharing one store; crashes, pauses, rolling deploys.

An instance is one engine object with its own in-memory state (its lock table, if its locks are
per instance). A crash cancels every request it is serving and throws that state away; the
store keeps whatever was written. A pause stalls the instance at its next store call until it
resumes — the stop-the-world stall that lets a lease expire under a holder.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio

from reference_impl.locks import LockService
from reference_impl.ports import Engine, EngineEnv, EngineFactory


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
    # a list, not a set: a set of scopes iterates in memory-address order (non-deterministic)
    _inflight: list[anyio.CancelScope] = field(default_factory=list)
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
        scope = anyio.CancelScope()
        self._inflight.append(scope)
        try:
            with scope:
                return await fn(self.engine)
        finally:
            self._inflight.remove(scope)
        # only reached when the crash cancelled the request (the scope swallowed it)
        raise InstanceCrashed(f"{self.name} crashed mid-request")


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

    cls = getattr(factory, "memory_lock_service", MemoryLockService)
    if cls is SeedLockService:
        return SeedLockService(true_stats=honest_stats)
    return cls(stats=honest_stats)
