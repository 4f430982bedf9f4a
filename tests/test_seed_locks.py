"""SeedLockService must keep each bug of the seed's `withLock`: every test here pins one."""

from __future__ import annotations

import anyio
import pytest

from reference_impl.lock_stats import FamilySnapshot, LockStats
from reference_impl.locks import LockService, LockTimeout
from reference_impl.seed_locks import SeedLockService, SeedLockStats
from tests.lockhelpers import Recorder, run

KEY = "purchase:create:u1:p1"


def test_implements_lock_service_port_with_growing_tokens() -> None:
    async def main() -> list[int]:
        locks: LockService = SeedLockService()
        tokens = []
        for _ in range(3):
            async with locks.hold(KEY, wait_timeout=1) as lease:
                assert lease.key == KEY
                tokens.append(lease.token)
        return tokens

    tokens = run(main)
    assert all(a < b for a, b in zip(tokens, tokens[1:], strict=False))


def test_two_callers_do_exclude_each_other() -> None:
    """The seed's lock works for two callers: the bugs below need three, or a timeout."""

    async def main() -> list[tuple[str, float]]:
        locks = SeedLockService()
        log: list[tuple[str, float]] = []

        async def caller(name: str, hold: float) -> None:
            async with locks.hold(KEY, wait_timeout=10):
                log.append((f"{name} in", anyio.current_time()))
                await anyio.sleep(hold)
                log.append((f"{name} out", anyio.current_time()))

        async with anyio.create_task_group() as tg:
            tg.start_soon(caller, "a", 5)
            await anyio.sleep(1)
            tg.start_soon(caller, "b", 1)
        return log

    assert [name for name, _ in run(main)] == ["a in", "a out", "b in", "b out"]


def test_bug1_waiters_that_saw_the_same_holder_run_at_once() -> None:
    async def main() -> tuple[int, list[tuple[str, float]]]:
        locks = SeedLockService()
        t0 = anyio.current_time()
        inside = max_inside = 0
        entries: list[tuple[str, float]] = []

        async def caller(name: str) -> None:
            nonlocal inside, max_inside
            async with locks.hold(KEY, wait_timeout=10):
                entries.append((name, anyio.current_time() - t0))
                inside += 1
                max_inside = max(max_inside, inside)
                await anyio.sleep(5)
                inside -= 1

        async with anyio.create_task_group() as tg:
            tg.start_soon(caller, "holder")
            await anyio.sleep(1)
            tg.start_soon(caller, "w1")
            await anyio.sleep(1)
            tg.start_soon(caller, "w2")
        return max_inside, entries

    max_inside, entries = run(main)
    assert max_inside == 2
    assert sorted(entries) == [("holder", 0), ("w1", 5), ("w2", 5)]


def test_bug1_fifty_callers_overlap() -> None:
    async def main() -> int:
        locks = SeedLockService()
        inside = max_inside = 0

        async def caller() -> None:
            nonlocal inside, max_inside
            async with locks.hold(KEY, wait_timeout=1000):
                inside += 1
                max_inside = max(max_inside, inside)
                await anyio.sleep(1)
                inside -= 1

        async with anyio.create_task_group() as tg:
            for _ in range(50):
                tg.start_soon(caller)
        return max_inside

    assert run(main) == 49  # the first holder alone, then all 49 waiters together


def test_bug2_timeout_bounds_waiting_only_the_holder_runs_on() -> None:
    async def main() -> dict[str, object]:
        locks = SeedLockService()
        t0 = anyio.current_time()
        out: dict[str, object] = {}

        async def holder() -> None:
            async with locks.hold(KEY, wait_timeout=10):
                await anyio.sleep(30)
                out["holder_wrote_at"] = anyio.current_time() - t0

        async with anyio.create_task_group() as tg:
            tg.start_soon(holder)
            await anyio.sleep(1)
            try:
                async with locks.hold(KEY, wait_timeout=10):
                    out["waiter_entered"] = True
            except LockTimeout as err:
                out["error"] = str(err)
                out["failed_at"] = anyio.current_time() - t0
        return out

    out = run(main)
    assert out["error"] == f"Lock timeout after 10000ms for key: {KEY}"
    assert out["failed_at"] == pytest.approx(11)
    assert "waiter_entered" not in out
    assert out["holder_wrote_at"] == pytest.approx(30)  # after the caller was told "busy"


def test_bug3_old_holder_deletes_newer_holders_entry() -> None:
    async def main() -> dict[str, object]:
        locks = SeedLockService()
        t0 = anyio.current_time()
        entered: list[str] = []
        log: dict[str, object] = {}
        running: set[str] = set()

        async def caller(name: str) -> None:
            async with locks.hold(KEY, wait_timeout=10):
                entered.append(name)
                running.add(name)
                # of the two woken waiters, the one that installed first finishes first
                first_waiter = name != "a" and entered.index(name) == 1
                await anyio.sleep({"a": 5}.get(name, 1 if first_waiter else 5))
                running.discard(name)

        async with anyio.create_task_group() as tg:
            tg.start_soon(caller, "a")
            await anyio.sleep(1)
            tg.start_soon(caller, "b")
            tg.start_soon(caller, "c")
            await anyio.sleep(5.5)  # t = 6.5: the first waiter finished at 6
            log["running"] = set(running)
            log["active_locks"] = locks.seed_stats().active_locks
            d_start = anyio.current_time()
            async with locks.hold(KEY, wait_timeout=10):
                log["d_waited"] = anyio.current_time() - d_start
                log["running_beside_d"] = set(running)
        log["at"] = anyio.current_time() - t0
        return log

    log = run(main)
    running = log["running"]
    assert isinstance(running, set) and len(running) == 1  # the newer holder still runs...
    assert log["active_locks"] == 0  # ...but its entry is gone
    assert log["d_waited"] == 0  # so a fourth caller walks straight in
    assert log["running_beside_d"] == running


def test_bug4_total_wait_time_includes_run_time() -> None:
    async def main() -> tuple[SeedLockStats, FamilySnapshot, FamilySnapshot]:
        seed_view, honest = LockStats(), LockStats()
        locks = SeedLockService(seed_view, true_stats=honest)

        async def caller(hold: float) -> None:
            async with locks.hold(KEY, wait_timeout=10):
                await anyio.sleep(hold)

        await caller(5)  # uncontended: waits 0 s, runs 5 s
        async with anyio.create_task_group() as tg:
            tg.start_soon(caller, 5)  # runs 5 s
            await anyio.sleep(1)
            tg.start_soon(caller, 3)  # waits 4 s, runs 3 s
        key = "purchase:create"
        return locks.seed_stats(), seed_view.snapshot()[key], honest.snapshot()[key]

    seed, seed_view, honest = run(main)
    assert seed.total_locks_acquired == 3
    assert seed.total_wait_time_ms == pytest.approx(5000 + 5000 + 7000)
    assert seed.average_wait_time_ms == pytest.approx(17000 / 3)
    assert seed.true_total_wait_time_ms == pytest.approx(4000)
    assert seed.active_locks == 0
    # the seed-view LockStats reports what the seed would: an idle lock that "waits" seconds
    assert seed_view.count == 3 and seed_view.max == pytest.approx(7000)
    assert seed_view.p50 == pytest.approx(5000, rel=1e-3)
    assert honest.count == 3 and honest.max == pytest.approx(4000) and honest.p50 == 0


def test_bug4_failed_calls_are_not_counted() -> None:
    async def main() -> tuple[SeedLockStats, SeedLockStats, FamilySnapshot, FamilySnapshot]:
        seed_view, honest = LockStats(), LockStats()
        locks = SeedLockService(seed_view, true_stats=honest)

        async def holder() -> None:
            async with locks.hold(KEY, wait_timeout=10):
                await anyio.sleep(20)

        async with anyio.create_task_group() as tg:
            tg.start_soon(holder)
            await anyio.sleep(1)
            with pytest.raises(LockTimeout):
                async with locks.hold(KEY, wait_timeout=10):
                    pass
            during = locks.seed_stats()
        with pytest.raises(RuntimeError):
            async with locks.hold(KEY, wait_timeout=10):
                await anyio.sleep(2)
                raise RuntimeError("fn failed")
        key = "purchase:create"
        return during, locks.seed_stats(), seed_view.snapshot()[key], honest.snapshot()[key]

    during, after, seed_view, honest = run(main)
    assert during.total_locks_acquired == 0 and during.total_wait_time_ms == 0
    assert during.timeouts == 1  # honest extra, not a seed field
    assert after.total_locks_acquired == 1  # the holder only: the timeout and the throw vanish
    assert after.total_wait_time_ms == pytest.approx(20_000)
    assert (
        seed_view.count == 1 and seed_view.timeouts == 1 and seed_view.max == pytest.approx(20_000)
    )
    assert honest.count == 2 and honest.timeouts == 1 and honest.max == pytest.approx(10_000)


def test_with_lock_and_true_stats_listener_see_real_grant_times() -> None:
    async def main() -> tuple[int, Recorder]:
        rec = Recorder()
        locks = SeedLockService(true_stats=LockStats(on_event=rec))

        async def fn() -> int:
            await anyio.sleep(2)
            return 42

        return await locks.with_lock(KEY, fn, 10_000), rec

    result, rec = run(main)
    assert result == 42
    assert [(e.kind, e.at) for e in rec.events] == [("granted", 0), ("released", 2)]
    assert rec.events[1].hold_s == pytest.approx(2)
