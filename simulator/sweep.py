"""Seed sweeps across worker processes: one scenario, many seeds, a summary per run.

Its own module, apart from the Hypothesis search (`simulator.explore`), so that a spawned
worker imports only what a run needs: Hypothesis alone cost each worker 0.14 s of start-up.
"""

from __future__ import annotations

import atexit
import gc
import multiprocessing
import tempfile
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simulator.runner import run_scenario
from simulator.scenario import Scenario


@dataclass(frozen=True)
class SweepJob:
    scenario: Scenario
    seed: int
    engine: str
    out_dir: str | None
    scenario_path: str | None = None


def run_job(job: SweepJob) -> dict[str, Any]:
    """One run in a worker process; returns its summary (small, picklable)."""
    if job.out_dir is None:  # nobody will read the run folder: do not leave it behind
        with tempfile.TemporaryDirectory(prefix="paysim-sweep-") as tmp:
            return _summary(job, Path(tmp))
    return _summary(job, Path(job.out_dir) / f"seed-{job.seed}")


def _summary(job: SweepJob, out: Path) -> dict[str, Any]:
    report = run_scenario(job.scenario, job.seed, job.engine, out, scenario_path=job.scenario_path)
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
    executor: Any = None,
) -> Iterator[dict[str, Any]]:
    """Summaries in seed order; `workers` processes share the seeds (spawned, not forked).

    With an `executor` (a `simulator.cluster.pool.ClusterPool`) the jobs run there instead and
    the summaries come back as they finish, in no particular order.

    One worker (or one seed) runs in this process: no start-up to pay. Otherwise the seeds go
    out one at a time, in order, to whichever worker is free (chunks of one: with chunks of
    several, a worker can be left with a chunk while the others idle at the end), and the
    summaries come back in seed order as soon as each is ready.
    """
    jobs = [
        SweepJob(scenario, seed, engine, str(out_dir) if out_dir else None, scenario_path)
        for seed in seeds
    ]
    if executor is not None:
        yield from executor.sweep(jobs)
        return
    workers = min(workers, len(jobs))
    if workers <= 1:
        yield from map(run_job, jobs)
        return
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, context, initializer=_worker_started) as pool:
        yield from pool.map(run_job, jobs)
