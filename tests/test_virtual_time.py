"""The virtual clock and the harness's sleeps (simulator/virtual_time.py) keep trio's semantics:
the same wake-up times, cancellation, and interplay with trio's own deadlines. Each test fails
if the private trio API it relies on moves (pinned range in pyproject.toml)."""

from __future__ import annotations

import heapq
import math
import signal

import pytest
import trio
import trio.testing

from simulator import virtual_time
from simulator.scheduling import seed_scheduler


def _run(fn, clock: trio.abc.Clock | None = None):  # type: ignore[no-untyped-def]
    return trio.run(fn, clock=clock or virtual_time.virtual_clock())


def _wake_order(seed: int) -> list[tuple[str, float]]:
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, seconds: float) -> None:
        await virtual_time.sleep(seconds)
        woke.append((name, trio.current_time()))

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            for name, seconds in (("c", 3.0), ("a", 1.0), *((f"b{n}", 2.0) for n in range(6))):
                nursery.start_soon(sleeper, name, seconds)

    seed_scheduler(seed)
    _run(main)
    return woke


def test_sleepers_wake_at_their_deadlines_ties_together_in_the_seeded_schedulers_order() -> None:
    woke = _wake_order(1)
    assert [t for _, t in woke] == [1.0] + [2.0] * 6 + [3.0]
    assert woke[0][0] == "a" and woke[-1][0] == "c"
    assert _wake_order(1) == woke  # same seed, same order
    ties = {tuple(n for n, _ in _wake_order(seed)[1:7]) for seed in range(1, 9)}
    assert len(ties) > 1  # the tie is ordered by the scheduler's seed, not by the heap


def test_virtual_time_moves_only_by_jumps_and_never_reads_the_wall_clock() -> None:
    async def main() -> list[float]:
        seen = [trio.current_time()]
        for _ in range(3):
            seen.append(trio.current_time())  # no sleep: frozen
        await virtual_time.sleep(86_400.0)  # a day, instantly
        seen.append(trio.current_time())
        return seen

    seen = _run(main)
    assert seen[:4] == [seen[0]] * 4
    assert seen[4] == pytest.approx(seen[0] + 86_400.0)


def test_a_cancelled_sleep_raises_cancelled_and_never_wakes_its_task_later() -> None:
    events: list[tuple[str, float]] = []

    async def main() -> None:
        with trio.move_on_after(5.0) as scope:
            await virtual_time.sleep(10.0)
        events.append(("timed out", trio.current_time()))
        assert scope.cancelled_caught
        # the dead timer at t=10 must not reschedule this task while it sleeps again
        await virtual_time.sleep(20.0)
        events.append(("slept", trio.current_time()))

    _run(main)
    assert events == [("timed out", 5.0), ("slept", 25.0)]


def test_an_already_cancelled_task_does_not_park() -> None:
    async def main() -> bool:
        with trio.CancelScope() as scope:
            scope.cancel()
            await virtual_time.sleep(100.0)
        return trio.current_time() == 0.0

    assert _run(main)


def test_trio_deadlines_and_harness_timers_interleave_in_time_order() -> None:
    order: list[tuple[str, float]] = []

    async def trio_sleeper() -> None:
        await trio.sleep(1.5)
        order.append(("trio", trio.current_time()))

    async def harness_sleeper() -> None:
        await virtual_time.sleep(1.0)
        order.append(("harness", trio.current_time()))
        await virtual_time.sleep(1.0)
        order.append(("harness", trio.current_time()))

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio_sleeper)
            nursery.start_soon(harness_sleeper)

    _run(main)
    assert order == [("harness", 1.0), ("trio", 1.5), ("harness", 2.0)]


def test_without_a_virtual_clock_it_is_trio_sleep() -> None:
    async def main() -> float:
        await virtual_time.sleep(3.0)
        await virtual_time.sleep_until(trio.current_time() + 2.0)
        return trio.current_time()

    assert _run(main, trio.testing.MockClock(autojump_threshold=0)) == 5.0


def test_zero_negative_and_infinite_sleeps_behave_as_trio_sleep() -> None:
    async def main() -> float:
        await virtual_time.sleep(0)
        with pytest.raises(ValueError):
            await virtual_time.sleep(-1.0)
        with trio.move_on_after(7.0):
            await virtual_time.sleep(math.inf)
        return trio.current_time()

    assert _run(main) == 7.0


def test_a_cancelled_timer_due_with_a_live_one_wakes_nobody() -> None:
    """B and A both due at t=10, B first in the heap; A's sleep was cancelled at t=5 and A is
    asleep again until t=25: popping A's dead timer with B's must not wake A at t=10."""
    woke: list[tuple[str, float]] = []

    async def b() -> None:
        await virtual_time.sleep(10.0)
        woke.append(("b", trio.current_time()))

    async def a() -> None:
        with trio.move_on_after(5.0):
            await virtual_time.sleep(10.0)
        await virtual_time.sleep(20.0)
        woke.append(("a", trio.current_time()))

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(b)
            await trio.lowlevel.checkpoint()
            nursery.start_soon(a)

    _run(main)
    assert woke == [("b", 10.0), ("a", 25.0)]


def test_a_virtual_run_still_hears_other_threads_though_it_polls_lazily() -> None:
    """The loop asks the OS for I/O at one pass in POLL_EVERY: a callback another thread hands
    in (as Ctrl-C's delivery does) still arrives. No deadline is pending, so virtual time
    cannot jump: only the callback can end the wait (the run is in a thread, to bound it)."""
    import threading

    done: list[bool] = []

    async def main() -> None:
        token = trio.lowlevel.current_trio_token()
        woke = trio.Event()
        threading.Timer(0.05, lambda: token.run_sync_soon(woke.set)).start()
        await woke.wait()
        done.append(True)

    runner = threading.Thread(target=_run, args=(main,), daemon=True)
    runner.start()
    runner.join(timeout=10)
    assert done == [True], "the callback from another thread never arrived"


class _CtrlCAfterPush:
    """`heapq` for simulator.virtual_time whose next push, once armed, is followed by a real
    SIGINT: `signal.raise_signal` runs the Python handler (trio's) before it returns, so Ctrl-C
    lands exactly between a sleep's timer going on the heap and its task parking."""

    heappop = staticmethod(heapq.heappop)

    def __init__(self) -> None:
        self.armed = False

    def heappush(self, heap: list, item: object) -> None:  # type: ignore[type-arg]
        heapq.heappush(heap, item)
        if self.armed:
            self.armed = False
            signal.raise_signal(signal.SIGINT)


def test_ctrl_c_as_a_sleep_parks_leaves_no_live_timer_to_wake_its_task_later(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """KeyboardInterrupt raised in `sleep` after its timer is pushed (SIGINT or SIGTERM at that
    bytecode) left a live timer for a task that never parked: the next jump rescheduled it
    while it waited in its nursery, and trio died of a TrioInternalError. `sleep` is
    KI-protected, as trio's own ParkingLot.park is: the interrupt is delivered at the park."""
    ctrl_c = _CtrlCAfterPush()
    monkeypatch.setattr(virtual_time, "heapq", ctrl_c)
    cleaned: list[float] = []

    async def worker() -> None:
        try:
            await virtual_time.sleep(100.0)
        finally:  # cleanup that takes virtual time: the clock jumps while main waits for it
            with trio.CancelScope(shield=True):
                await virtual_time.sleep(5.0)
            cleaned.append(trio.current_time())

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(worker)
            await trio.lowlevel.checkpoint()  # the worker parks until t=100
            ctrl_c.armed = True
            await virtual_time.sleep(1.0)
            raise AssertionError("the interrupted sleep returned")

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # trio's is installed
    try:
        with pytest.raises(BaseException) as caught:  # noqa: PT011 - checked just below
            _run(main)
    finally:
        signal.signal(signal.SIGINT, previous)
    error = caught.value
    if isinstance(error, BaseExceptionGroup):
        assert error.split(KeyboardInterrupt)[1] is None, repr(error)
    else:
        assert isinstance(error, KeyboardInterrupt), repr(error)
    assert cleaned == [5.0]
