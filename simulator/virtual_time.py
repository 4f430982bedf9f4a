"""Virtual time for simulated runs: trio's MockClock, read and advanced without the wall clock,
and the harness's own sleeps kept on a timer heap of their own.

Why: a purchase makes the harness sleep several times (a customer thinking, each way of every
Stripe request, webhook delays and retries), and `trio.sleep` is a cancel scope with a deadline
that wakes its task by cancelling it: about four times the CPU of parking the task on a heap
and rescheduling it when the clock gets there. Likewise a MockClock that never runs (rate 0)
still reads the wall clock on every `current_time()`, and its autojump builds trio's whole
run statistics to find the next deadline.

How: `virtual_clock()` is a `trio.testing.MockClock(rate=0, autojump_threshold=0)` (trio's own
class, which its run loop insists on for autojumping) whose `current_time`, `deadline_to_sleep_time`
and `_autojump` are replaced on the instance. When every task is blocked, the clock jumps to the
earlier of trio's next deadline and the harness's next timer, and wakes the harness sleepers
that are due; trio wakes its own at the next pass, as before. `sleep()` parks on that heap when
the run's clock is a virtual clock and is `trio.sleep` otherwise (wall-clock runs, tests on a
plain MockClock). Sleepers are woken in (deadline, arrival) order; trio then orders each batch
by its seeded scheduler (simulator/scheduling.py), so runs stay reproducible.

Under a virtual clock the run loop also asks the OS for I/O at only one pass in POLL_EVERY that
would not block (`_install_lazy_poll`).

At its start (`start_clock`, which trio calls inside the run) a virtual clock also gives the
run the queue that lets a task alone in its pass skip a checkpoint (`scheduling.checkpoint`).

Private trio API (MockClock's `_virtual_base`, `_autojump`, the runner's deadline heap and run
queue, the running clock, the I/O manager's `get_events`): the trio version range is pinned,
and tests/test_virtual_time.py and tests/test_scheduling.py check every property this relies
on, so an upgrade that moves any of it fails there.
"""

from __future__ import annotations

import heapq
import itertools
import math
from typing import Any

import trio
import trio.testing

from simulator import scheduling

_run: Any = trio._core._run  # noqa: SLF001 - see module docstring
#: what MockClock answers for "how long may the loop block" when its rate is 0 and time is frozen
_FOREVER = 999999999
#: the attribute a virtual clock keeps its timer heap in
_TIMERS = "_paysim_timers"


#: a parked sleeper is `[deadline, arrival number, task, live]`: a list, so the heap compares
#: (deadline, arrival) in C, and `live` can be cleared when the sleep is cancelled
_AT, _TASK, _LIVE = 0, 2, 3
Timer = list[Any]


#: a virtual run's event loop asks the OS for I/O without waiting (timeout 0) at every pass,
#: though nothing in it does I/O but trio's own wake-up socket (Ctrl-C, a thread's callback):
#: one real poll in this many is enough to hear those within microseconds
POLL_EVERY = 32


def _install_lazy_poll() -> None:
    """Idempotent: under a virtual clock, the OS is asked for I/O at one zero-timeout pass in
    POLL_EVERY (and whenever trio would block); under any other clock, at every pass."""
    manager = getattr(_run, "TheIOManager", None)  # epoll, kqueue or IOCP: this platform's
    if manager is None or getattr(manager.get_events, "_paysim_lazy", False):
        return
    poll = manager.get_events
    passes = itertools.count()

    def get_events(self: Any, timeout: float) -> Any:
        if (
            timeout == 0
            and next(passes) % POLL_EVERY
            and hasattr(_run.GLOBAL_RUN_CONTEXT.runner.clock, _TIMERS)
        ):
            return []  # "the timeout expired with no I/O", as a poll would mostly say
        return poll(self, timeout)

    get_events._paysim_lazy = True  # type: ignore[attr-defined]
    manager.get_events = get_events


def virtual_clock() -> trio.testing.MockClock:
    """A clock for `trio.run(..., clock=)`: virtual time that jumps whenever every task waits."""
    clock = trio.testing.MockClock(rate=0.0, autojump_threshold=0.0)
    timers: list[Timer] = []
    counter = itertools.count()

    def current_time() -> float:
        return clock._virtual_base  # rate 0: time moves only when it jumps

    def deadline_to_sleep_time(deadline: float) -> float:
        return 0 if deadline <= clock._virtual_base else _FOREVER

    def autojump() -> None:
        while timers and not timers[0][_LIVE]:
            heapq.heappop(timers)
        target = _run.GLOBAL_RUN_CONTEXT.runner.deadlines.next_deadline()
        if timers and timers[0][_AT] < target:
            target = timers[0][_AT]
        if clock._virtual_base < target < math.inf:
            clock._virtual_base = target
        now = clock._virtual_base
        while timers and timers[0][_AT] <= now:
            timer = heapq.heappop(timers)
            if timer[_LIVE]:
                timer[_LIVE] = False
                trio.lowlevel.reschedule(timer[_TASK])

    start_mock_clock = clock.start_clock

    def start_clock() -> None:  # in the run, before its first task
        start_mock_clock()
        scheduling.install_run_queue()  # what lets a task alone skip a checkpoint

    clock.start_clock = start_clock  # type: ignore[method-assign]
    clock.current_time = current_time  # type: ignore[method-assign]
    clock.deadline_to_sleep_time = deadline_to_sleep_time  # type: ignore[method-assign]
    clock._autojump = autojump  # type: ignore[method-assign]
    setattr(clock, _TIMERS, (timers, counter))
    _install_lazy_poll()
    return clock


@trio.lowlevel.enable_ki_protection
async def sleep(seconds: float) -> None:
    """`trio.sleep(seconds)`: the same checkpoint, cancellation and wake-up time, cheaper on a
    virtual clock.

    KeyboardInterrupt-protected, as trio's own ParkingLot.park (the same push-then-park): trio
    raises Ctrl-C (and SIGTERM, which paysim's CLI forwards to it) at whatever bytecode an
    unprotected task is at. Between the push and the park it left a live timer for a task that
    never parked, and the clock's next jump rescheduled that task while it waited elsewhere
    (its nursery's exit, or after it had exited): a TrioInternalError instead of a clean
    interrupt. Protected, the interrupt is delivered at the park (the abort below kills the
    timer), or at the main task's next checkpoint."""
    kept = getattr(_run.GLOBAL_RUN_CONTEXT.runner.clock, _TIMERS, None)
    if kept is not None and seconds == 0:
        await scheduling.checkpoint()  # trio.sleep(0) is a checkpoint
        return
    if kept is None or seconds <= 0 or seconds == math.inf:
        await trio.sleep(seconds)
        return
    timers, counter = kept
    timer = [trio.current_time() + seconds, next(counter), trio.lowlevel.current_task(), True]
    heapq.heappush(timers, timer)

    def abort(_: Any) -> trio.lowlevel.Abort:
        timer[_LIVE] = False  # cancelled: left on the heap, skipped when it comes up
        return trio.lowlevel.Abort.SUCCEEDED

    await trio.lowlevel.wait_task_rescheduled(abort)


async def sleep_until(deadline: float) -> None:
    """`trio.sleep_until(deadline)` (the run clock's time), cheaper on a virtual clock."""
    await sleep(deadline - trio.current_time())
