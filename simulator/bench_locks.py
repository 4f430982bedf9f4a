"""Lock service micro-benchmarks, each next to the plain primitive it replaces.

Memory locks run on trio with its real clock: a dict of `anyio.Lock` is what the seed's design
would be without its bugs, so it is the fair peer. The Redis fenced lock runs on asyncio (the
`redis.asyncio` client) next to redis-py's own `redis.asyncio.lock.Lock` on the same server:
one `SET NX PX` and a release script, no fencing, no statistics.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.lowlevel

from reference_impl.lock_stats import LockStats
from reference_impl.memory_locks import MemoryLockService


@dataclass(frozen=True)
class Rate:
    ops: int
    seconds: float

    @property
    def per_s(self) -> float:
        return self.ops / self.seconds if self.seconds > 0 else 0.0


async def _timed(ops: int, body: Callable[[], Awaitable[None]]) -> Rate:
    started = time.perf_counter()
    await body()
    return Rate(ops, time.perf_counter() - started)


# ---- in-memory locks (trio, real clock)


def memory_uncontended(n: int, keys: int = 1000) -> tuple[Rate, Rate]:
    """acquire + release of `n` requests over `keys` keys, one task: (MemoryLockService, anyio.Lock)."""
    names = [f"purchase:create:u{i}:p1" for i in range(keys)]

    async def service() -> Rate:
        locks = MemoryLockService(LockStats())

        async def body() -> None:
            for i in range(n):
                async with locks.hold(names[i % keys], wait_timeout=10.0):
                    pass

        return await _timed(n, body)

    async def plain() -> Rate:
        table: dict[str, anyio.Lock] = {}

        async def body() -> None:
            for i in range(n):
                name = names[i % keys]
                lock = table.get(name)
                if lock is None:
                    lock = table[name] = anyio.Lock()
                async with lock:
                    pass

        return await _timed(n, body)

    return anyio.run(service, backend="trio"), anyio.run(plain, backend="trio")


def memory_contended(tasks: int, rounds: int) -> tuple[Rate, Rate]:
    """`tasks` tasks take one key `rounds` times each, holding it across a checkpoint so the
    others queue: grants per second, (MemoryLockService, anyio.Lock)."""

    async def run(acquire: Callable[[], Any]) -> Rate:
        async def worker() -> None:
            for _ in range(rounds):
                async with acquire():
                    await anyio.lowlevel.checkpoint()

        async def body() -> None:
            async with anyio.create_task_group() as tg:
                for _ in range(tasks):
                    tg.start_soon(worker)

        return await _timed(tasks * rounds, body)

    async def service() -> Rate:
        locks = MemoryLockService(LockStats())
        return await run(lambda: locks.hold("session:cs_1", wait_timeout=60.0))

    async def plain() -> Rate:
        lock = anyio.Lock()
        return await run(lambda: lock)

    return anyio.run(service, backend="trio"), anyio.run(plain, backend="trio")


# ---- Redis locks (asyncio, redis.asyncio)


def redis_available(url: str) -> str | None:
    """None when a Redis answers at `url`, else why not (one line)."""
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=1.0, socket_timeout=1.0)
        try:
            client.ping()
        finally:
            client.close()
    except (redis.RedisError, OSError, ValueError) as exc:
        return f"no Redis at {url}: {' '.join(str(exc).split())}"
    return None


def redis_locks(url: str, n: int, concurrency: int) -> dict[str, Rate]:
    """acquire + release: sequential (`n`, one key) and with `concurrency` tasks (each on its own
    key, `n` in all), for RedisLockService and redis-py's Lock, on one `connect` client.

    Both sides run interleaved, so that load from elsewhere on the machine (other processes,
    Redis itself) hits both alike instead of whichever happened to run then: sequential ops
    alternate one by one (each op timed on its own), concurrent runs alternate in short rounds;
    in both, which side goes first alternates too.
    """
    import redis.asyncio.lock

    from reference_impl.redis_locks import RedisLockService, connect

    namespace = f"paysim:bench:{uuid.uuid4().hex[:8]}:"
    tasks = max(1, concurrency)
    # concurrent rounds: at least 8 if `n` allows, of up to 16 ops per task (short enough to see
    # the same load, long enough that the start and end of a round do not dominate it)
    per_task = max(1, min(16, n // (tasks * 8)))
    rounds = max(1, n // (tasks * per_task))

    async def main() -> dict[str, Rate]:
        # socket timeouts, as a service should run with (see `connect`); same client for both
        client = connect(url)
        try:
            fenced = RedisLockService(client, namespace=namespace + "fenced:", lease_s=30.0)

            async def fenced_once(key: str) -> None:
                async with fenced.hold(key, wait_timeout=10.0):
                    pass

            async def plain_once(key: str) -> None:
                lock = redis.asyncio.lock.Lock(client, f"{namespace}plain:{key}", timeout=30.0)
                if not await lock.acquire(blocking_timeout=10.0):
                    raise RuntimeError("redis-py lock not acquired")
                await lock.release()

            sides = (("fenced", fenced_once), ("redis_py", plain_once))
            for _, once in sides:  # a connection per task, scripts loaded
                await _concurrent(once, tasks, tasks)()
            results: dict[str, Rate] = {}
            for name, rate in _interleaved(await _sequential(sides, n)):
                results[f"{name}_sequential"] = rate
            concurrent: dict[str, list[Rate]] = {name: [] for name, _ in sides}
            for r in range(rounds):
                for name, once in sides if r % 2 == 0 else sides[::-1]:
                    concurrent[name].append(await _concurrent(once, per_task * tasks, tasks)())
            for name, rate in _interleaved(concurrent):
                results[f"{name}_concurrent"] = rate
            return results
        finally:
            await _cleanup(client, namespace)
            await client.aclose()

    return anyio.run(main, backend="asyncio")


def _interleaved(parts: dict[str, list[Rate]]) -> list[tuple[str, Rate]]:
    """One rate per side from its interleaved parts: all ops over all their time."""
    return [
        (name, Rate(sum(p.ops for p in rates), sum(p.seconds for p in rates)))
        for name, rates in parts.items()
    ]


async def _sequential(
    sides: tuple[tuple[str, Callable[[str], Awaitable[None]]], ...], n: int
) -> dict[str, list[Rate]]:
    """`n` acquire + release of one key per side, the sides alternating op by op."""
    took = {name: 0.0 for name, _ in sides}
    for i in range(n):
        for name, once in sides if i % 2 == 0 else sides[::-1]:
            started = time.perf_counter()
            await once("seq")
            took[name] += time.perf_counter() - started
    return {name: [Rate(n, seconds)] for name, seconds in took.items()}


def _concurrent(
    once: Callable[[str], Awaitable[None]], n: int, tasks: int
) -> Callable[[], Awaitable[Rate]]:
    """`tasks` tasks, a key each, `n // tasks` acquire + release each."""
    each = max(1, n // tasks)

    async def worker(k: int) -> None:
        for _ in range(each):
            await once(f"c{k}")

    async def body() -> None:
        async with anyio.create_task_group() as tg:
            for k in range(tasks):
                tg.start_soon(worker, k)

    return lambda: _timed(each * tasks, body)


async def _cleanup(client: Any, namespace: str) -> None:
    keys = [key async for key in client.scan_iter(match=f"{namespace}*")]
    if keys:
        await client.delete(*keys)
