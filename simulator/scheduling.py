"""Deterministic task scheduling on trio, behind one small adapter over private trio internals.

trio deliberately makes scheduling order unpredictable, in three ways this module undoes:
1. each batch of runnable tasks is reordered from a module-level RNG (`trio._core._run._r`):
   we seed it from the run seed;
2. how a batch is reordered depends on whether Hypothesis was imported (its trio plugin flips
   `_ALLOW_DETERMINISTIC_SCHEDULING`): we always use the deterministic mode, so a CLI run and a
   test run of the same seed schedule identically;
3. timers that expire at the same instant fire in `id(cancel_scope)` order, i.e. by memory
   address: we tie-break them by creation order instead.
It also gives the simulator a cheaper checkpoint (`checkpoint`): one a task alone in its pass
skips, since no other task could run in it, reading trio's run queue and deadline heap.
All of it is private API: the trio version range is pinned in pyproject.toml, and
tests/test_scheduling.py proves the property (same seed, same order; in one process and across
processes), so an upgrade that moves any of it fails loudly there.
"""

from __future__ import annotations

import itertools
import random
from collections import deque
from heapq import heappush
from typing import Any

import anyio
import trio

_run: Any = trio._core._run  # noqa: SLF001 - see module docstring
_tiebreak = itertools.count()
_installed = False


def scheduler_rng() -> random.Random:
    rng = getattr(_run, "_r", None)
    if not isinstance(rng, random.Random) or not hasattr(_run, "Deadlines"):
        raise RuntimeError(
            f"trio {trio.__version__} moved its scheduler internals (trio._core._run._r, "
            "Deadlines); paysim cannot make scheduling deterministic with this version"
        )
    return rng


def _add_deadline(self: Any, deadline: float, cancel_scope: Any) -> None:
    heappush(self._heap, (deadline, next(_tiebreak), cancel_scope))
    self._active += 1


def _install() -> None:
    global _installed
    if not _installed:
        scheduler_rng()
        _run._ALLOW_DETERMINISTIC_SCHEDULING = True
        _run.Deadlines.add = _add_deadline
        _installed = True


def seed_scheduler(seed: int) -> None:
    """Call before starting each trio run: the scheduling order then depends on `seed` only."""
    _install()
    scheduler_rng().seed(seed)


class RunQueue(deque[Any]):
    """trio's run queue, remembering how many tasks the current pass took from it (a pass
    takes its batch with `list(runq)` then `runq.clear()`). A virtual clock installs one at
    the start of its run (simulator/virtual_time.py)."""

    taken = 0

    def clear(self) -> None:
        self.taken = len(self)
        super().clear()


def install_run_queue() -> None:
    """The running trio run's queue becomes a `RunQueue` (its tasks kept)."""
    runner = _run.GLOBAL_RUN_CONTEXT.runner
    runner.runq = RunQueue(runner.runq)


async def checkpoint() -> None:
    """`trio.lowlevel.checkpoint()`, skipped when no other task could run before this one
    resumes: in a virtual-time run, with this task alone in its pass, no task woken since and
    no deadline due.

    Then the checkpoint's next pass would take this task alone again at the same instant (time
    moves only when every task waits, and a timer wakes only then; trio expires due deadlines
    at the start of a pass), so skipping it leaves every interleaving, and the seeded
    scheduler's draws (a batch of one draws nothing), as they were; cancellation is still
    checked. trio's own `checkpoint` allows this ("the scheduler has the option of ignoring
    this and continuing to run the current task"). Real I/O (a run against Redis) lands when
    it lands either way: at most a little later. Most of a simulated purchase's store calls
    are made alone: skipping their passes took it from 18.6 passes to 10.4 and 3 % of its
    instructions (tests/test_scheduling.py: the same history bytes with and without)."""
    runner = getattr(_run.GLOBAL_RUN_CONTEXT, "runner", None)
    if runner is None:  # not in a trio run
        await anyio.lowlevel.checkpoint()
        return
    runq = runner.runq
    if (
        type(runq) is RunQueue
        and runq.taken == 1
        and not runq
        and runner.deadlines.next_deadline() > runner.clock.current_time()
    ):
        await trio.lowlevel.checkpoint_if_cancelled()
        return
    await trio.lowlevel.checkpoint()
