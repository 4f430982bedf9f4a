"""trio's scheduler RNG, seeded from the run seed, makes task order repeatable (DESIGN.md)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
import trio.testing

from simulator import scheduling, virtual_time
from simulator.run import simulate
from simulator.scenario_file import load_scenario
from simulator.scheduling import scheduler_rng, seed_scheduler
from simulator.virtual_time import virtual_clock

_PROGRAM = """
import anyio, trio.testing
from simulator.scheduling import seed_scheduler

async def main():
    order = []
    lock = anyio.Lock()
    async def worker(i):
        await anyio.sleep(1)
        async with lock:
            order.append(i)
            await anyio.sleep(0)
    async with anyio.create_task_group() as tg:
        for i in range(30):
            tg.start_soon(worker, i)
    print(",".join(map(str, order)))

SEED
anyio.run(main, backend="trio", backend_options={"clock": trio.testing.MockClock(autojump_threshold=0)})
"""


def _order_in_fresh_process(seed: int | None) -> str:
    code = _PROGRAM.replace("SEED", f"seed_scheduler({seed})" if seed is not None else "")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_trio_still_exposes_its_scheduler_rng() -> None:
    rng = scheduler_rng()
    seed_scheduler(7)
    first = rng.random()
    seed_scheduler(7)
    assert rng.random() == first


def test_seeded_order_is_identical_across_processes_and_differs_by_seed() -> None:
    a, b = _order_in_fresh_process(3), _order_in_fresh_process(3)
    assert a == b
    others = {_order_in_fresh_process(s) for s in (4, 5, 6)}
    assert others != {a}, "different seeds should be able to give different interleavings"


def test_unseeded_order_varies_between_processes() -> None:
    # the property the adapter exists for: without it trio reshuffles runnable tasks
    orders = {_order_in_fresh_process(None) for _ in range(8)}
    assert len(orders) > 1


def test_in_process_repeat_with_same_seed() -> None:
    async def main() -> list[int]:
        order: list[int] = []

        async def worker(i: int) -> None:
            await anyio.sleep(1)
            order.append(i)

        async with anyio.create_task_group() as tg:
            for i in range(20):
                tg.start_soon(worker, i)
        return order

    def once() -> list[int]:
        seed_scheduler(11)
        return anyio.run(
            main,
            backend="trio",
            backend_options={"clock": trio.testing.MockClock(autojump_threshold=0)},
        )

    assert once() == once()


# ---- the checkpoint a task alone in its pass may skip (scheduling.checkpoint)


class _Steps(trio.abc.Instrument):
    """How many times each task was stepped: a checkpoint that yields costs its task a step."""

    def __init__(self) -> None:
        self.steps: dict[trio.lowlevel.Task, int] = {}

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self.steps[task] = self.steps.get(task, 0) + 1

    def of(self, name: str) -> int:
        (count,) = [n for task, n in self.steps.items() if task.name.endswith(name)]
        return count


def _run_virtual(main: Any, clock: Any = None, steps: _Steps | None = None) -> _Steps:
    steps = steps or _Steps()
    seed_scheduler(1)
    trio.run(main, clock=clock or virtual_clock(), instruments=[steps])
    return steps


async def _alone() -> None:
    for _ in range(50):
        await scheduling.checkpoint()


def test_a_task_alone_under_virtual_time_does_not_yield() -> None:
    steps = _run_virtual(_alone)
    assert steps.of("._alone") <= 3  # its first steps, not one per call


def test_under_any_other_clock_every_call_yields() -> None:
    steps = _run_virtual(_alone, clock=trio.testing.MockClock(autojump_threshold=0))
    assert steps.of("._alone") > 50


def test_tasks_runnable_together_still_interleave() -> None:
    order: list[str] = []

    async def worker(name: str) -> None:
        for _ in range(5):
            order.append(name)
            await scheduling.checkpoint()

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(worker, "a")
            nursery.start_soon(worker, "b")

    _run_virtual(main)
    rounds = [sorted(order[i : i + 2]) for i in range(0, 10, 2)]
    assert rounds == [["a", "b"]] * 5  # each yields to the other at every call


def test_a_task_woken_by_one_alone_yields_to_it() -> None:
    order: list[str] = []

    async def waker(event: trio.Event) -> None:
        event.set()  # the other task is runnable now: this task's checkpoint must let it run
        await scheduling.checkpoint()
        order.append("waker")

    async def main() -> None:
        event = trio.Event()
        async with trio.open_nursery() as nursery:

            async def waiter() -> None:
                await event.wait()
                order.append("waiter")

            nursery.start_soon(waiter)
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(waker, event)

    _run_virtual(main)
    assert order == ["waiter", "waker"]


def test_cancellation_is_still_checked() -> None:
    caught: list[bool] = []

    async def main() -> None:
        with trio.CancelScope() as scope:
            scope.cancel()
            await scheduling.checkpoint()
        caught.append(scope.cancelled_caught)

    _run_virtual(main)
    assert caught == [True]


def test_a_deadline_due_at_this_instant_is_honoured_first() -> None:
    """A timer and a timeout at the same instant: the sleeper wakes alone (trio expires its
    deadlines at the next pass), so its checkpoint must yield for the timeout to be delivered,
    as `trio.lowlevel.checkpoint` would. (Not observed through `cancel_called`, which expires a
    due deadline when read.)"""
    steps = _Steps()
    yielded: list[bool] = []

    async def main() -> None:
        async with trio.open_nursery() as nursery:

            async def timed() -> None:
                with trio.CancelScope(deadline=trio.current_time() + 1):
                    await trio.sleep_forever()

            nursery.start_soon(timed)
            await virtual_time.sleep(1)
            me = trio.lowlevel.current_task()
            before = steps.steps[me]
            await scheduling.checkpoint()
            yielded.append(steps.steps[me] > before)

    _run_virtual(main, steps=steps)
    assert yielded == [True]


def test_outside_trio_it_is_anyio_checkpoint() -> None:
    async def main() -> str:
        await scheduling.checkpoint()
        return "ran"

    assert anyio.run(main, backend="asyncio") == "ran"


def test_skipping_checkpoints_alone_changes_no_history(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same run with every skipped checkpoint taken writes the same history bytes: a timeout
    scenario, where timers and deadlines meet."""
    scenario = load_scenario(Path("scenarios/ci/stripe-slower-than-timeouts.toml"))
    skipping = simulate(scenario, 2, "reference", None).history_sha256
    monkeypatch.setattr(scheduling, "checkpoint", trio.lowlevel.checkpoint)
    taking = simulate(scenario, 2, "reference", None).history_sha256
    assert skipping == taking
