"""Where runs execute: worker processes on this machine, and the seed sweep built on them.

`explore`, `suite` and `mutants` hand out jobs (a picklable job value and the function that runs
it) and get results streamed back as each finishes. `LocalPool` is the executor of this machine:
`submit(fn, job, wall_clock=...)` returns a `concurrent.futures.Future`, so another executor (a
cluster's) can stand in for it by offering the same method. Two kinds of run share it:

- simulated runs (virtual time) are CPU-bound: one process per core;
- wall-clock runs (Redis-locked scenarios) mostly wait on real time: they get processes of their
  own beside those, instead of holding a core each while they sleep.

Its own module, apart from the Hypothesis search (`simulator.explore`), so that a spawned
worker imports only what a run needs: Hypothesis alone cost each worker 0.14 s of start-up.
"""

from __future__ import annotations

import atexit
import gc
import multiprocessing
import tempfile
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from simulator.scenario import Scenario

J = TypeVar("J")
R = TypeVar("R")

#: processes for wall-clock runs, beside the CPU workers: each spends most of its time asleep
WALL_CLOCK_WORKERS = 4


def is_wall_clock(scenario: Scenario) -> bool:
    """Redis-locked scenarios run in real time (Redis expires leases in real time)."""
    return scenario.topology.locks == "redis"


class LocalPool:
    """Runs jobs here (`workers` 1) or in spawned worker processes kept for the pool's life (no
    re-import per run): `workers` for simulated runs, `wall_clock_workers` more for wall-clock
    runs. Use as a context manager; leaving it cancels what has not started."""

    def __init__(self, workers: int, wall_clock_workers: int = WALL_CLOCK_WORKERS) -> None:
        self.workers = max(1, workers)
        self.wall_clock_workers = max(1, wall_clock_workers)
        self._pools: dict[bool, ProcessPoolExecutor] = {}

    def __enter__(self) -> LocalPool:
        return self

    def __exit__(self, *exc: object) -> None:
        for pool in self._pools.values():
            pool.shutdown(cancel_futures=True)
        self._pools.clear()

    def submit(self, fn: Callable[[J], R], job: J, *, wall_clock: bool = False) -> Future[R]:
        """`fn(job)` somewhere; with one worker, here and now (the future is already done)."""
        if self.workers == 1:
            done: Future[R] = Future()
            try:
                done.set_result(fn(job))
            except BaseException as exc:  # handed to whoever reads the future, as a pool would
                done.set_exception(exc)
            return done
        pool = self._pools.get(wall_clock)
        if pool is None:
            size = self.wall_clock_workers if wall_clock else self.workers
            context = multiprocessing.get_context("spawn")
            pool = ProcessPoolExecutor(size, context, initializer=_worker_started)
            self._pools[wall_clock] = pool
        return pool.submit(fn, job)


@dataclass(frozen=True)
class SweepJob:
    scenario: Scenario
    seed: int
    engine: str
    out_dir: str | None
    scenario_path: str | None = None
    coverage_dir: str | None = None


def run_job(job: SweepJob) -> dict[str, Any]:
    """One run in a worker process; returns its summary (small, picklable)."""
    if job.out_dir is None:  # nobody will read the run folder: do not leave it behind
        with tempfile.TemporaryDirectory(prefix="paysim-sweep-") as tmp:
            return _summary(job, Path(tmp))
    return _summary(job, Path(job.out_dir) / f"seed-{job.seed}")


def _summary(job: SweepJob, out: Path) -> dict[str, Any]:
    from simulator.runner import run_scenario  # here: a pool's worker imports only what it runs

    cov = Path(job.coverage_dir) if job.coverage_dir else None
    report = run_scenario(
        job.scenario, job.seed, job.engine, out, scenario_path=job.scenario_path, coverage_dir=cov
    )
    return report.summary


def _worker_started() -> None:
    """Pool initializer: freeze the heap when the worker exits, before the interpreter tears down.

    A spawned worker ends in a full interpreter finalization whose garbage collections walk every
    imported module and object (measured ~0.2 s of CPU, several times the bare interpreter's), and
    the sweep waits for its workers to exit. Frozen objects are skipped by those collections;
    nothing a run sees changes, and the other exit handlers still run.
    """
    atexit.register(gc.freeze)


def sweep(
    scenario: Scenario,
    seeds: Iterable[int],
    engine: str,
    *,
    workers: int = 1,
    out_dir: Path | None = None,
    scenario_path: str | None = None,
    pool: Any = None,
    coverage_dir: Path | None = None,
) -> Iterator[dict[str, Any]]:
    """Summaries in seed order; `workers` processes share the seeds (spawned, not forked).

    With a `pool` (an executor with `LocalPool.submit`'s shape: a cluster's, `--cluster`) the
    jobs run there instead and the summaries come back as they finish, in no particular order.

    One worker (or one seed) runs in this process: no start-up to pay. Otherwise the seeds go
    out one at a time, in order, to whichever worker is free (chunks of one: with chunks of
    several, a worker can be left with a chunk while the others idle at the end), and the
    summaries come back in seed order as soon as each is ready.
    """
    jobs = [
        SweepJob(
            scenario,
            seed,
            engine,
            str(out_dir) if out_dir else None,
            scenario_path,
            str(coverage_dir) if coverage_dir else None,
        )
        for seed in seeds
    ]
    if pool is not None:
        wall_clock = is_wall_clock(scenario)
        futures = [pool.submit(run_job, job, wall_clock=wall_clock) for job in jobs]
        for future in as_completed(futures):
            yield future.result()
        return
    if min(workers, len(jobs)) <= 1:
        yield from map(run_job, jobs)
        return
    wall_clock = is_wall_clock(scenario)
    with LocalPool(min(workers, len(jobs)), min(workers, len(jobs))) as pool:
        futures = [pool.submit(run_job, job, wall_clock=wall_clock) for job in jobs]
        for future in futures:
            yield future.result()
