"""MemoryLockService and LockStats under trio with virtual time."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

from reference_impl.lock_stats import FamilySnapshot, LockStats
from reference_impl.locks import Lease, LockService, LockTimeout
from reference_impl.memory_locks import MemoryLockService
from tests.lockhelpers import Recorder, run

KEY = "purchase:create:u1:p1"
OTHER = "webhook:session:cs_1"


def test_implements_lock_service_port() -> None:
    locks: LockService = MemoryLockService()
    assert callable(locks.hold)


def test_mutual_exclusion_with_50_tasks() -> None:
    async def main() -> tuple[int, list[int], int]:
        locks = MemoryLockService()
        inside = max_inside = 0
        done: list[int] = []

        async def worker(i: int) -> None:
            nonlocal inside, max_inside
            async with locks.hold(KEY, wait_timeout=1000):
                inside += 1
                max_inside = max(max_inside, inside)
                await anyio.sleep(0.01 if i % 2 else 0)
                await anyio.lowlevel.checkpoint()
                inside -= 1
            done.append(i)

        async with anyio.create_task_group() as tg:
            for i in range(50):
                tg.start_soon(worker, i)
        return max_inside, done, len(locks)

    max_inside, done, left = run(main)
    assert max_inside == 1
    assert sorted(done) == list(range(50))
    assert left == 0


def test_grants_in_request_order_with_growing_tokens() -> None:
    async def main() -> tuple[list[int], list[tuple[int, int]], int]:
        locks = MemoryLockService()
        requested: list[int] = []
        granted: list[tuple[int, int]] = []
        holder_in = anyio.Event()

        async def holder() -> None:
            async with locks.hold(KEY, wait_timeout=1) as lease:
                granted.append((-1, lease.token))
                holder_in.set()
                await anyio.sleep(1)

        async def waiter(i: int) -> None:
            requested.append(i)  # no checkpoint between this and joining the queue
            async with locks.hold(KEY, wait_timeout=100) as lease:
                granted.append((i, lease.token))
                await anyio.sleep(0.01)

        async with anyio.create_task_group() as tg:
            tg.start_soon(holder)
            await holder_in.wait()
            for i in range(20):
                tg.start_soon(waiter, i)
            await anyio.sleep(0.5)
            waiting = locks.waiters(KEY)
        return requested, granted, waiting

    requested, granted, waiting = run(main)
    assert waiting == 20
    assert [i for i, _ in granted] == [-1, *requested]
    tokens = [t for _, t in granted]
    assert tokens == sorted(tokens) and len(set(tokens)) == len(tokens)


def test_releaser_cannot_barge_ahead_of_the_queue() -> None:
    """The key is handed over on release, so a request in the same step queues behind."""

    async def main() -> list[str]:
        locks = MemoryLockService()
        order: list[str] = []

        async def holder() -> None:
            async with locks.hold(KEY, wait_timeout=1):
                order.append("holder")
                await anyio.sleep(1)
            async with locks.hold(KEY, wait_timeout=10):  # no yield since the release
                order.append("holder again")

        async def waiter() -> None:
            async with locks.hold(KEY, wait_timeout=10):
                order.append("waiter")
                await anyio.sleep(1)

        async with anyio.create_task_group() as tg:
            tg.start_soon(holder)
            await anyio.sleep(0.1)
            tg.start_soon(waiter)
        return order

    assert run(main) == ["holder", "waiter", "holder again"]


def test_timeout_raises_and_leaves_the_holder_alone() -> None:
    async def main() -> dict[str, object]:
        stats = LockStats()
        locks = MemoryLockService(stats)
        t0 = anyio.current_time()
        out: dict[str, object] = {}

        async def holder() -> None:
            async with locks.hold(KEY, wait_timeout=1):
                await anyio.sleep(20)
                out["holder_done_at"] = anyio.current_time() - t0

        async with anyio.create_task_group() as tg:
            tg.start_soon(holder)
            await anyio.sleep(1)
            with pytest.raises(LockTimeout) as err:
                async with locks.hold(KEY, wait_timeout=10):
                    out["entered"] = True
            out["error"] = err.value
            out["timed_out_at"] = anyio.current_time() - t0
            out["queue_after_timeout"] = locks.waiters(KEY)
            out["held_after_timeout"] = KEY in locks.active_keys()
        out["keys_at_end"] = locks.active_keys()
        out["snap"] = stats.snapshot()["purchase:create"]
        return out

    out = run(main)
    assert "entered" not in out
    err = out["error"]
    assert isinstance(err, LockTimeout) and err.key == KEY and err.timeout == 10
    assert str(err) == f"Lock timeout after 10000ms for key: {KEY}"
    assert out["timed_out_at"] == pytest.approx(11)
    assert out["holder_done_at"] == pytest.approx(20)
    assert out["queue_after_timeout"] == 0 and out["held_after_timeout"] is True
    assert out["keys_at_end"] == set()
    snap = out["snap"]
    assert isinstance(snap, FamilySnapshot)
    assert (snap.count, snap.timeouts, snap.waiters, snap.max_waiters) == (1, 1, 0, 1)
    assert snap.max == pytest.approx(10_000)


def test_cancelled_waiter_leaves_no_trace() -> None:
    async def main() -> dict[str, object]:
        stats = LockStats()
        locks = MemoryLockService(stats)
        t0 = anyio.current_time()
        entered: list[tuple[str, float]] = []
        w1_scope = anyio.CancelScope()
        out: dict[str, object] = {}

        async def holder() -> None:
            async with locks.hold(KEY, wait_timeout=1):
                entered.append(("holder", anyio.current_time() - t0))
                await anyio.sleep(5)

        async def w1() -> None:
            with w1_scope:
                async with locks.hold(KEY, wait_timeout=100):
                    entered.append(("w1", anyio.current_time() - t0))

        async def w2() -> None:
            async with locks.hold(KEY, wait_timeout=100):
                entered.append(("w2", anyio.current_time() - t0))

        async with anyio.create_task_group() as tg:
            tg.start_soon(holder)
            await anyio.sleep(0.1)
            tg.start_soon(w1)  # first in the queue
            await anyio.sleep(0.1)
            tg.start_soon(w2)
            await anyio.sleep(1.8)
            out["queued_before"] = locks.waiters(KEY)
            w1_scope.cancel()
            await anyio.sleep(0.1)
            out["queued_after"] = locks.waiters(KEY)
        out["entered"] = entered
        out["w1_cancelled"] = w1_scope.cancelled_caught
        out["keys"] = locks.active_keys()
        out["snap"] = stats.snapshot()["purchase:create"]
        return out

    out = run(main)
    assert out["queued_before"] == 2 and out["queued_after"] == 1
    assert out["w1_cancelled"] is True
    assert out["entered"] == [("holder", 0), ("w2", pytest.approx(5))]
    assert out["keys"] == set()
    snap = out["snap"]
    assert isinstance(snap, FamilySnapshot)
    assert (snap.count, snap.cancels, snap.timeouts, snap.waiters) == (2, 1, 0, 0)


def test_grant_racing_a_cancel_passes_on_to_the_next_waiter() -> None:
    """W1 is cancelled, then granted before it runs: the grant must reach W2, not vanish."""

    async def main() -> dict[str, object]:
        locks = MemoryLockService()
        t0 = anyio.current_time()
        leases: dict[str, Lease] = {}
        w1_scope = anyio.CancelScope()

        async def holder() -> None:
            async with locks.hold(KEY, wait_timeout=1) as lease:
                leases["holder"] = lease
                await anyio.sleep(5)
                w1_scope.cancel()  # W1 is woken with Cancelled but has not run yet...
            # ...and the release right here hands the key to W1 first

        async def w1() -> None:
            with w1_scope:
                async with locks.hold(KEY, wait_timeout=100) as lease:
                    leases["w1"] = lease

        async def w2() -> None:
            async with locks.hold(KEY, wait_timeout=100) as lease:
                leases["w2"] = lease
                leases["w2_at"] = Lease(KEY, round(anyio.current_time() - t0))

        async with anyio.create_task_group() as tg:
            tg.start_soon(holder)
            await anyio.sleep(0.1)
            tg.start_soon(w1)
            await anyio.sleep(0.1)
            tg.start_soon(w2)
        return {
            "leases": leases,
            "keys": locks.active_keys(),
            "w1_cancelled": w1_scope.cancel_called,
        }

    out = run(main)
    leases = out["leases"]
    assert isinstance(leases, dict)
    assert "w1" not in leases and out["w1_cancelled"] is True
    assert leases["w2_at"].token == 5  # no wait for a timeout: W2 got the key at once
    # token holder+1 was handed to W1 and passed on: proves the race was exercised
    assert leases["w2"].token == leases["holder"].token + 2
    assert out["keys"] == set()


def test_cancel_right_after_grant_releases_to_next_waiter() -> None:
    """W1 granted, then cancelled before it runs: it may enter, but must hand over on exit."""

    async def main() -> tuple[list[str], set[str], bool]:
        locks = MemoryLockService()
        entered: list[str] = []
        w1_scope = anyio.CancelScope()

        async def holder() -> None:
            async with locks.hold(KEY, wait_timeout=1):
                await anyio.sleep(5)
            w1_scope.cancel()  # the grant went to W1 a moment ago

        async def w1() -> None:
            with w1_scope:
                async with locks.hold(KEY, wait_timeout=100):
                    entered.append("w1")
                    await anyio.sleep(1)
                    entered.append("w1 finished")

        async def w2() -> None:
            async with locks.hold(KEY, wait_timeout=100):
                entered.append("w2")

        async with anyio.create_task_group() as tg:
            tg.start_soon(holder)
            await anyio.sleep(0.1)
            tg.start_soon(w1)
            await anyio.sleep(0.1)
            tg.start_soon(w2)
            with anyio.fail_after(6):  # W2 must not wait for its own timeout
                while "w2" not in entered:
                    await anyio.sleep(0.01)
        return entered, locks.active_keys(), w1_scope.cancelled_caught

    entered, keys, w1_cancelled = run(main)
    assert "w1 finished" not in entered and entered[-1] == "w2"
    assert w1_cancelled is True
    assert keys == set()


@pytest.mark.parametrize("attempt", range(10))
def test_grant_at_the_waiters_own_deadline_is_never_lost(attempt: int) -> None:
    """Release and W1's deadline fall on the same virtual instant; trio picks the order."""

    async def main() -> tuple[list[str], set[str]]:
        locks = MemoryLockService()
        outcome: list[str] = []

        async def holder() -> None:
            async with locks.hold(KEY, wait_timeout=1):
                await anyio.sleep(5)

        async def w1() -> None:
            try:
                async with locks.hold(KEY, wait_timeout=5):
                    outcome.append("w1 entered")
            except LockTimeout:
                outcome.append("w1 timed out")

        async def w2() -> None:
            async with locks.hold(KEY, wait_timeout=100):
                outcome.append("w2 entered")

        async with anyio.create_task_group() as tg:
            tg.start_soon(holder)
            await anyio.lowlevel.checkpoint()
            await anyio.sleep(0)
            tg.start_soon(w1)
            await anyio.sleep(0)
            tg.start_soon(w2)
            with anyio.fail_after(6):
                while "w2 entered" not in outcome:
                    await anyio.sleep(0.01)
        return outcome, locks.active_keys()

    outcome, keys = run(main)
    assert outcome.count("w2 entered") == 1
    assert ("w1 entered" in outcome) != ("w1 timed out" in outcome)
    assert keys == set()


def test_key_table_empties_after_release() -> None:
    async def main() -> list[int]:
        locks = MemoryLockService()
        sizes = [len(locks)]
        async with locks.hold(KEY, wait_timeout=1):
            async with locks.hold(OTHER, wait_timeout=1):
                sizes.append(len(locks))
            sizes.append(len(locks))
        sizes.append(len(locks))

        async def user() -> None:
            async with locks.hold(KEY, wait_timeout=10):
                await anyio.sleep(0.5)

        async with anyio.create_task_group() as tg:
            for _ in range(5):
                tg.start_soon(user)
        sizes.append(len(locks))
        return sizes

    assert run(main) == [0, 2, 1, 0, 0]


def test_token_grows_per_key_even_after_its_entry_was_dropped() -> None:
    async def main() -> tuple[list[int], list[int], int]:
        locks = MemoryLockService()
        key_tokens: list[int] = []
        other_tokens: list[int] = []
        for _ in range(3):
            async with locks.hold(KEY, wait_timeout=1) as lease:
                key_tokens.append(lease.token)
            async with locks.hold(OTHER, wait_timeout=1) as lease:
                other_tokens.append(lease.token)
        return key_tokens, other_tokens, len(locks)

    key_tokens, other_tokens, left = run(main)
    assert left == 0
    for tokens in (key_tokens, other_tokens):
        assert all(a < b for a, b in zip(tokens, tokens[1:], strict=False))


def test_stats_separate_wait_from_hold() -> None:
    async def main() -> tuple[dict[str, FamilySnapshot], Recorder]:
        rec = Recorder()
        stats = LockStats(on_event=rec)
        locks = MemoryLockService(stats)

        async def holder() -> None:
            async with locks.hold(KEY, wait_timeout=1):
                await anyio.sleep(5)

        async def waiter() -> None:
            async with locks.hold(KEY, wait_timeout=10):
                await anyio.sleep(1)

        async with anyio.create_task_group() as tg:
            tg.start_soon(holder)
            await anyio.sleep(0)
            tg.start_soon(waiter)
        async with locks.hold(OTHER, wait_timeout=1):
            await anyio.sleep(2)
        return stats.snapshot(), rec

    snaps, rec = run(main)
    purchase, webhook = snaps["purchase:create"], snaps["webhook:session"]
    assert purchase.count == 2 and purchase.timeouts == 0
    assert purchase.max == pytest.approx(5000, rel=1e-3)  # not 6000: the waiter's hold is out
    assert purchase.mean == pytest.approx(2500, rel=1e-3)
    assert purchase.hold_max == pytest.approx(5000, rel=1e-3)
    assert purchase.hold_p50 == pytest.approx(1000, rel=1e-3)
    assert (purchase.waiters, purchase.max_waiters) == (0, 1)
    assert webhook.count == 1 and webhook.max == 0 and webhook.p99 == 0
    assert webhook.hold_max == pytest.approx(2000, rel=1e-3)
    assert purchase.report_row().keys() == {"count", "p50", "p95", "p99", "max", "timeouts"}
    ev = [e for e in rec.events if e.key == KEY]
    assert [(e.kind, e.token) for e in ev] == [
        ("granted", 1),
        ("released", 1),
        ("granted", 2),
        ("released", 2),
    ]
    assert ev[2].wait_s == pytest.approx(5) and ev[2].at == pytest.approx(5)
    assert ev[3].hold_s == pytest.approx(1)
    assert {e.family for e in ev} == {"purchase:create"}


def test_stats_count_timeouts_and_max_waiters() -> None:
    async def main() -> FamilySnapshot:
        stats = LockStats()
        locks = MemoryLockService(stats)
        timeouts = 0

        async def holder() -> None:
            async with locks.hold(KEY, wait_timeout=1):
                await anyio.sleep(10)

        async def waiter() -> None:
            nonlocal timeouts
            try:
                async with locks.hold(KEY, wait_timeout=3):
                    pass
            except LockTimeout:
                timeouts += 1

        async with anyio.create_task_group() as tg:
            tg.start_soon(holder)
            await anyio.sleep(0)
            for _ in range(5):
                tg.start_soon(waiter)
        assert timeouts == 5
        return stats.snapshot()["purchase:create"]

    snap = run(main)
    assert (snap.count, snap.timeouts, snap.waiters, snap.max_waiters) == (1, 5, 0, 5)
    assert snap.p99 == pytest.approx(3000, rel=1e-3)  # timed-out waits are waits too
    assert snap.p50 == pytest.approx(3000, rel=1e-3)


def test_lock_stats_histogram_edges() -> None:
    t = [100.0]
    stats = LockStats(now=lambda: t[0])
    assert stats.now() == 100.0
    assert stats.snapshot() == {}
    stats.granted("a:b:1", -0.5)  # clock stepped back: recorded as 0, no crash
    stats.granted("a:b:2", 2 * 3600.0)  # beyond the histogram's 1 h: clamped, exact max kept
    for ms in range(1, 101):
        stats.granted("a:b:3", ms / 1000)
    stats.timed_out("a:b:1", None)
    snap = stats.snapshot()["a:b"]
    assert snap.count == 102 and snap.timeouts == 1
    assert snap.max == pytest.approx(7_200_000)
    assert snap.p50 == pytest.approx(50, rel=2e-3)
    assert snap.p95 == pytest.approx(96, rel=2e-3)  # rank ceil(0.95 * 102) = 97th
    assert stats.report() == {"a:b": snap.report_row()}
