"""RedisLockService against a real Redis server (wall clock, asyncio backend; trio via threads)."""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

import anyio
import anyio.lowlevel
import pytest
import redis
import redis.asyncio
import redis.exceptions

from reference_impl.lock_stats import LockStats, _new_histogram, _Timings
from reference_impl.locks import Lease, LockService, LockTimeout, LockUnavailable
from reference_impl.redis_locks import RedisLockService, _Script, connect
from tests.lockhelpers import Recorder
from tests.redishelpers import (  # noqa: F401
    RedisTestServer,
    closed_port_url,
    redis_server,
    redis_url,
    run_asyncio,
    unique_namespace,
)

KEY = "purchase:create:u1:p1"


@asynccontextmanager
async def service(url: str, **kwargs: object) -> AsyncIterator[RedisLockService]:
    """A service on its own client and namespace (pass `namespace=` to share one)."""
    kwargs.setdefault("namespace", unique_namespace())
    client = connect(url)
    try:
        yield RedisLockService(client, rng=random.Random(7), **kwargs)  # type: ignore[arg-type]
    finally:
        with suppress(redis.exceptions.RedisError):  # leave no fence keys on a shared server
            async for key in client.scan_iter(match=f"{kwargs['namespace']}*"):
                await client.delete(key)
        await client.aclose()


def test_implements_lock_service_port(redis_url: str) -> None:  # noqa: F811
    async def main() -> None:
        async with service(redis_url) as locks:
            port: LockService = locks
            async with port.hold(KEY, wait_timeout=1) as lease:
                assert isinstance(lease, Lease) and lease.key == KEY

    run_asyncio(main)


def test_mutual_exclusion_50_tasks_on_two_instances(redis_url: str) -> None:  # noqa: F811
    """Two services (two engine instances, two clients) on one namespace exclude each other."""

    async def main() -> tuple[int, list[int], int]:
        ns = unique_namespace()
        inside = max_inside = 0
        tokens: list[int] = []
        async with service(redis_url, namespace=ns) as a, service(redis_url, namespace=ns) as b:

            async def worker(i: int) -> None:
                nonlocal inside, max_inside
                locks = a if i % 2 else b
                async with locks.hold(KEY, wait_timeout=30) as lease:
                    inside += 1
                    max_inside = max(max_inside, inside)
                    tokens.append(lease.token)
                    await anyio.sleep(0.002 if i % 3 else 0)
                    await anyio.lowlevel.checkpoint()
                    inside -= 1

            async with anyio.create_task_group() as tg:
                for i in range(50):
                    tg.start_soon(worker, i)
            grants = sum(
                s.count for s in (*a.stats.snapshot().values(), *b.stats.snapshot().values())
            )
        return max_inside, tokens, grants

    max_inside, tokens, grants = run_asyncio(main)
    assert max_inside == 1
    assert len(tokens) == grants == 50
    # entry order is grant order (exclusion holds), so tokens must strictly increase in it
    assert all(x < y for x, y in zip(tokens, tokens[1:], strict=False))


def test_waiting_backs_off_instead_of_busy_polling(redis_url: str) -> None:  # noqa: F811
    async def main() -> int:
        async with (
            service(redis_url, poll_initial_s=0.005, poll_max_s=0.1) as locks,
            locks.hold(KEY, wait_timeout=1),
        ):
            before = locks.attempts
            with pytest.raises(LockTimeout):
                await locks.acquire(KEY, wait_timeout=1.0)
            return locks.attempts - before

    attempts = run_asyncio(main)
    # 5, 10, 20, 40 ms steps then about 75 ms apart: ~17 tries in 1 s; a busy loop does thousands
    assert 5 <= attempts <= 30


def test_backoff_is_jittered_capped_and_seeded() -> None:
    client = redis.asyncio.Redis()  # never connects: only the schedule is tested
    a = RedisLockService(client, rng=random.Random(3), poll_initial_s=0.01, poll_max_s=0.08)
    b = RedisLockService(client, rng=random.Random(3), poll_initial_s=0.01, poll_max_s=0.08)
    delays = [a._backoff(n, holder_pttl_ms=0) for n in range(8)]
    assert delays == [b._backoff(n, holder_pttl_ms=0) for n in range(8)]
    for n, d in enumerate(delays):
        step = min(0.08, 0.01 * 2**n)
        assert step / 2 <= d <= step
    assert a._backoff(10, holder_pttl_ms=3) <= 0.003  # wake when the holder's lease ends


def test_stale_lease_cannot_release_the_new_holders_lock(redis_url: str) -> None:  # noqa: F811
    async def main() -> None:
        rec = Recorder()
        async with service(redis_url, lease_s=0.2, stats=LockStats(on_event=rec)) as locks:
            old = await locks.acquire(KEY, wait_timeout=1)
            await anyio.sleep(0.3)  # lease expires while the old holder still "works"
            new = await locks.acquire(KEY, wait_timeout=1)
            assert new.token > old.token
            assert await locks.release(old) is False  # compare-and-delete refuses
            assert locks.lost_leases == 1
            assert "lease_lost" in rec.kinds()
            with pytest.raises(LockTimeout):  # the new holder still holds it
                await locks.acquire(KEY, wait_timeout=0.05)
            assert await locks.release(new) is True
            assert (await locks.acquire(KEY, wait_timeout=0.05)).token > new.token

    run_asyncio(main)


def test_expired_holder_is_overtaken_with_a_larger_token(redis_url: str) -> None:  # noqa: F811
    async def main() -> tuple[int, int, int, int]:
        ns = unique_namespace()
        async with (
            service(redis_url, namespace=ns, lease_s=0.2) as slow_locks,
            service(redis_url, namespace=ns, lease_s=5) as fast_locks,
        ):
            tokens: dict[str, int] = {}
            slow_in = anyio.Event()

            async def slow() -> None:
                async with slow_locks.hold(KEY, wait_timeout=1) as lease:  # exit must not raise
                    tokens["slow"] = lease.token
                    slow_in.set()
                    await anyio.sleep(0.6)

            async def fast() -> None:
                await slow_in.wait()
                async with fast_locks.hold(KEY, wait_timeout=2) as lease:
                    tokens["fast"] = lease.token
                    await anyio.sleep(0.6)  # still inside when the slow holder leaves

            async with anyio.create_task_group() as tg:
                tg.start_soon(slow)
                tg.start_soon(fast)
            return tokens["slow"], tokens["fast"], slow_locks.lost_leases, fast_locks.lost_leases

    slow_token, fast_token, slow_lost, fast_lost = run_asyncio(main)
    assert slow_token < fast_token
    # the slow holder's release found its lease gone and did not delete the fast holder's lock
    assert (slow_lost, fast_lost) == (1, 0)


def test_extension_keeps_the_lock_past_its_lease(redis_url: str) -> None:  # noqa: F811
    async def main() -> None:
        async with service(redis_url, lease_s=0.3, extend=True) as locks:
            holder_in = anyio.Event()

            async def holder() -> None:
                async with locks.hold(KEY, wait_timeout=1):
                    holder_in.set()
                    await anyio.sleep(1.0)  # more than three leases

            async with anyio.create_task_group() as tg:
                tg.start_soon(holder)
                await holder_in.wait()
                with pytest.raises(LockTimeout):
                    await locks.acquire(KEY, wait_timeout=0.8)
            assert locks.lost_leases == 0
            lease = await locks.acquire(KEY, wait_timeout=0.1)  # released on exit, not expired
            await locks.release(lease)

    run_asyncio(main)


def test_extension_passes_errors_and_cancellation_through(redis_url: str) -> None:  # noqa: F811
    async def main() -> None:
        async with service(redis_url, lease_s=5, extend=True) as locks:
            with pytest.raises(ValueError, match="boom"):  # not an ExceptionGroup
                async with locks.hold(KEY, wait_timeout=1):
                    raise ValueError("boom")
            with anyio.move_on_after(0.1) as scope:
                async with locks.hold(KEY, wait_timeout=1):
                    await anyio.sleep(10)
            assert scope.cancelled_caught
            # both holders released at once (a 5 s lease would otherwise block this)
            await locks.release(await locks.acquire(KEY, wait_timeout=0.05))
            assert locks.lost_leases == locks.failed_releases == 0

    run_asyncio(main)


def test_wait_timeout_raises_and_is_recorded(redis_url: str) -> None:  # noqa: F811
    async def main() -> None:
        rec = Recorder()
        async with service(redis_url, stats=LockStats(on_event=rec)) as locks:
            async with locks.hold(KEY, wait_timeout=1):
                started = time.monotonic()
                with pytest.raises(LockTimeout) as info:
                    await locks.acquire(KEY, wait_timeout=0.25)
                assert 0.25 <= time.monotonic() - started < 0.45
            assert info.value.key == KEY
            snap = locks.stats.snapshot()["purchase:create"]
            assert (snap.count, snap.timeouts, snap.waiters, snap.max_waiters) == (1, 1, 0, 1)
            assert snap.max >= 250
            assert rec.kinds() == ["granted", "timeout", "released"]

    run_asyncio(main)


def test_stats_wait_excludes_hold_time(redis_url: str) -> None:  # noqa: F811
    async def main() -> None:
        rec = Recorder()
        async with service(redis_url, stats=LockStats(on_event=rec), poll_max_s=0.02) as locks:
            holder_in = anyio.Event()

            async def holder() -> None:
                async with locks.hold(KEY, wait_timeout=1):
                    holder_in.set()
                    await anyio.sleep(0.4)

            async def waiter() -> None:
                await holder_in.wait()
                await anyio.sleep(0.1)
                async with locks.hold(KEY, wait_timeout=2):
                    await anyio.sleep(0.2)

            async with anyio.create_task_group() as tg:
                tg.start_soon(holder)
                tg.start_soon(waiter)
        waits = [e.wait_s for e in rec.events if e.kind == "granted"]
        holds = [e.hold_s for e in rec.events if e.kind == "released"]
        assert waits[0] is not None and waits[0] < 0.05  # uncontended
        assert waits[1] is not None and 0.25 <= waits[1] < 0.4  # ~0.3 s, not 0.3 + its 0.2 hold
        assert holds[0] is not None and holds[0] >= 0.4
        assert holds[1] is not None and 0.2 <= holds[1] < 0.3

    run_asyncio(main)


def test_cancelled_waiter_is_recorded_and_leaves_no_trace(redis_url: str) -> None:  # noqa: F811
    async def main() -> None:
        rec = Recorder()
        async with service(redis_url, stats=LockStats(on_event=rec)) as locks:
            async with locks.hold(KEY, wait_timeout=1):
                with anyio.move_on_after(0.1):
                    await locks.acquire(KEY, wait_timeout=5)
            snap = locks.stats.snapshot()["purchase:create"]
            assert (snap.cancels, snap.waiters, snap.timeouts) == (1, 0, 0)
            await locks.release(await locks.acquire(KEY, wait_timeout=0.05))

    run_asyncio(main)


def test_redis_down_raises_lock_unavailable_quickly() -> None:
    async def main() -> None:
        stats = LockStats()
        async with service(closed_port_url(), stats=stats) as locks:
            started = time.monotonic()
            with pytest.raises(LockUnavailable) as info:  # exactly ours, nothing from redis-py
                async with locks.hold(KEY, wait_timeout=5):
                    pytest.fail("granted without Redis")
            assert time.monotonic() - started < 1.0
            assert isinstance(info.value.__cause__, redis.exceptions.ConnectionError)
            assert stats.snapshot().get("purchase:create") is None  # no grant, no wait

    run_asyncio(main)


def test_tokens_keep_growing_when_redis_loses_its_keys(
    redis_server: RedisTestServer,  # noqa: F811
) -> None:
    """After a restart (or FLUSHDB) a plain INCR fence would restart at 1; ours must not."""

    async def main() -> list[int]:
        tokens: list[int] = []
        ns = unique_namespace()
        async with service(redis_server.url, namespace=ns) as locks:
            for _ in range(3):
                lease = await locks.acquire(KEY, wait_timeout=1)
                tokens.append(lease.token)
                await locks.release(lease)
            await anyio.to_thread.run_sync(redis_server.lose_keys, ns)
            # the client reconnects on its own; allow a refused attempt while Redis comes back
            for _ in range(50):
                try:
                    lease = await locks.acquire(KEY, wait_timeout=1)
                    break
                except LockUnavailable:
                    await anyio.sleep(0.05)
            tokens.append(lease.token)
            await locks.release(lease)
            # only the fence key lost (eviction, expiry): same guarantee
            for _ in range(3):
                await locks.client.delete(locks._keys(KEY)[1])
                lease = await locks.acquire(KEY, wait_timeout=1)
                tokens.append(lease.token)
                await locks.release(lease)
        return tokens

    tokens = run_asyncio(main)
    assert all(x < y for x, y in zip(tokens, tokens[1:], strict=False)), tokens


def test_works_under_trio_with_a_sync_client(redis_url: str) -> None:  # noqa: F811
    """With `redis.Redis` (sync), calls run in worker threads: no asyncio needed."""

    async def main() -> tuple[int, list[int]]:
        client = redis.Redis.from_url(redis_url)
        ns = unique_namespace()
        locks = RedisLockService(client, namespace=ns, rng=random.Random(1))
        inside = max_inside = 0
        tokens: list[int] = []

        async def worker() -> None:
            nonlocal inside, max_inside
            async with locks.hold(KEY, wait_timeout=10) as lease:
                inside += 1
                max_inside = max(max_inside, inside)
                tokens.append(lease.token)
                await anyio.sleep(0.001)
                inside -= 1

        try:
            async with anyio.create_task_group() as tg:
                for _ in range(10):
                    tg.start_soon(worker)
        finally:
            for key in client.scan_iter(match=f"{ns}*"):
                client.delete(key)
            client.close()
        return max_inside, tokens

    max_inside, tokens = anyio.run(main, backend="trio")
    assert max_inside == 1
    assert len(tokens) == 10 and tokens == sorted(set(tokens))


# ---- release under cancellation, NOSCRIPT, the fence key, the statistics' fast recording


@pytest.mark.parametrize("socket_timeout", [True, False], ids=["client-timeout", "no-timeout"])
def test_release_cancelled_mid_call_still_deletes_the_lock(
    redis_url: str,  # noqa: F811
    socket_timeout: bool,
) -> None:
    """With a client socket timeout the release runs unscoped and a cancelled one is finished in a
    shielded scope; without, it always runs in one. Either way the lock is gone at once, the
    release is counted as such, and the cancellation still reaches its scope."""

    async def main() -> None:
        rec = Recorder()
        ns = unique_namespace()
        client = connect(redis_url) if socket_timeout else redis.asyncio.Redis.from_url(redis_url)
        locks = RedisLockService(client, namespace=ns, stats=LockStats(on_event=rec))
        assert locks._bounded is socket_timeout
        try:
            for _ in range(3):
                with anyio.move_on_after(0.05) as scope:
                    async with locks.hold(KEY, wait_timeout=1):
                        await anyio.sleep(10)  # cancelled here; the release then runs cancelled
                assert scope.cancelled_caught
                # a 30 s lease: only a release that happened lets this through
                await locks.release(await locks.acquire(KEY, wait_timeout=0.05))
            assert locks.lost_leases == locks.failed_releases == 0
            assert rec.kinds() == ["granted", "released"] * 6
        finally:
            async for key in client.scan_iter(match=f"{ns}*"):
                await client.delete(key)
            await client.aclose()

    run_asyncio(main)


def test_scripts_unknown_to_the_server_are_loaded_on_first_use(redis_url: str) -> None:  # noqa: F811
    """NOSCRIPT (a restarted or flushed Redis) loads the script and runs the call again."""

    async def main() -> None:
        async with service(redis_url) as locks:
            fresh = f"\n-- {unique_namespace()}"  # a text, hence a SHA, Redis has never seen
            locks._acquire_script = _Script(locks._acquire_script.text + fresh)
            locks._release_script = _Script(locks._release_script.text + fresh)
            first = await locks.acquire(KEY, wait_timeout=1)
            assert await locks.release(first) is True
            second = await locks.acquire(KEY, wait_timeout=1)
            assert second.token > first.token
            assert await locks.release(second) is True

    run_asyncio(main)


def test_fence_key_keeps_its_ttl_and_outranks_the_clock(redis_url: str) -> None:  # noqa: F811
    """The fence is rewritten with its TTL on every grant; a fence ahead of the server's clock
    (which stepped back) still yields fence + 1, never a smaller clock value."""

    async def main() -> None:
        async with service(redis_url, fence_ttl_s=60.0) as locks:
            _, fence_key = locks._keys(KEY)
            await locks.release(await locks.acquire(KEY, wait_timeout=1))
            assert 0 < await locks.client.pttl(fence_key) <= 60_000
            seconds, micros = await locks.client.time()
            ahead = (seconds + 3600) * 1_000_000 + micros  # an hour ahead of Redis's clock
            await locks.client.set(fence_key, ahead)
            lease = await locks.acquire(KEY, wait_timeout=1)
            assert lease.token == ahead + 1
            await locks.release(lease)
            assert int(await locks.client.get(fence_key)) == ahead + 1
            assert 0 < await locks.client.pttl(fence_key) <= 60_000

    run_asyncio(main)


def test_an_acquire_retried_after_a_lost_reply_is_granted_again(
    redis_url: str,  # noqa: F811
) -> None:
    """The client's own retry of an acquire that landed (same owner value) gets the lock with a
    larger token; any other owner still finds it held."""

    async def main() -> None:
        async with service(redis_url) as locks:
            lock_key, fence_key = locks._keys(KEY)

            async def attempt(owner: bytes) -> int:
                reply = await locks._eval(
                    locks._acquire_script, b"2", lock_key, fence_key, owner, b"30000", b"60000"
                )
                return int(reply)

            first = await attempt(b"owner-a")
            assert first > 0
            again = await attempt(b"owner-a")  # the reply to `first` was lost: retried
            assert again > first
            assert await attempt(b"owner-b") < 0  # held, by owner-a
            assert await locks.client.get(lock_key) == b"owner-a"
            await locks.client.delete(lock_key)

    run_asyncio(main)


def test_fast_histogram_recording_matches_hdrh() -> None:
    """`LockStats` records a grant's times with hdrh's index arithmetic inlined: same counts."""
    rng = random.Random(5)
    timings = _Timings()
    reference = _new_histogram()
    values = [0.0, 1e-7, 5e-7, 1e-6, 2.047e-3, 2.048e-3, 2.049e-3, 0.5, 3600.0, 7200.0, -1.0]
    values += [rng.expovariate(100.0) for _ in range(5000)] + [
        rng.uniform(0, 4000) for _ in range(500)
    ]
    for seconds in values:
        timings.record(seconds)
        reference.record_value(min(3_600_000_000, round(max(0.0, seconds) * 1_000_000)))
    assert timings._counts is not None  # the fast path ran, not the fallback
    assert list(timings.hist.counts) == list(reference.counts)
    got = (timings.hist.total_count, timings.hist.min_value, timings.hist.max_value)
    assert got == (reference.total_count, reference.min_value, reference.max_value)
    for pct in (50, 95, 99, 100):
        assert timings.hist.get_value_at_percentile(pct) == reference.get_value_at_percentile(pct)
