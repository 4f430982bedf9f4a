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
    key, `n` in all), for RedisLockService and redis-py's Lock."""
    import redis.asyncio
    import redis.asyncio.lock

    from reference_impl.redis_locks import RedisLockService

    namespace = f"paysim:bench:{uuid.uuid4().hex[:8]}:"

    async def main() -> dict[str, Rate]:
        client = redis.asyncio.Redis.from_url(url)
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

            results: dict[str, Rate] = {}
            for name, once in (("fenced", fenced_once), ("redis_py", plain_once)):
                await once("warm-up")
                results[f"{name}_sequential"] = await _timed(n, _sequential(once, n))
                results[f"{name}_concurrent"] = await _timed(n, _concurrent(once, n, concurrency))
            return results
        finally:
            await _cleanup(client, namespace)
            await client.aclose()

    return anyio.run(main, backend="asyncio")


def _sequential(once: Callable[[str], Awaitable[None]], n: int) -> Callable[[], Awaitable[None]]:
    async def body() -> None:
        for _ in range(n):
            await once("seq")

    return body


def _concurrent(
    once: Callable[[str], Awaitable[None]], n: int, tasks: int
) -> Callable[[], Awaitable[None]]:
    async def worker(k: int) -> None:
        for _ in range(n // tasks):
            await once(f"c{k}")

    async def body() -> None:
        async with anyio.create_task_group() as tg:
            for k in range(tasks):
                tg.start_soon(worker, k)

    return body


async def _cleanup(client: Any, namespace: str) -> None:
    keys = [key async for key in client.scan_iter(match=f"{namespace}*")]
    if keys:
        await client.delete(*keys)
