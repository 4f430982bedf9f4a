"""Jobs to the cluster's workers, results back as they finish, lost workers' jobs reported.

The executor of the same jobs the local pool runs (`sweep.SweepJob` through `sweep.run_job`,
`suite.Job` through `suite.run_job`): only where they run changes, so histories are the same
bytes. A job runs on whichever worker the scheduler picks; when a worker dies, the scheduler
runs its unfinished jobs again on the others (up to `distributed.scheduler.allowed-failures`
deaths per job). That is the retry: it happens inside Dask, so the pool learns of it from the
scheduler's `remove-worker` event, which names the jobs the worker was holding, and reports
each one (a line as it happens, and in `retried`).

Dask's `retries=` is not used: it re-runs a job that raised, and a run is deterministic, so
it would only raise again, later.
"""

from __future__ import annotations

import itertools
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from simulator.cluster.errors import ClusterError
from simulator.cluster.remote import run_shipped, write_run_folder
from simulator.cluster.session import ClusterSession
from simulator.suite import CaseResult, Job
from simulator.sweep import SweepJob, run_job

#: jobs in flight per worker thread, and at least (see `ClusterPool.window`)
JOBS_PER_THREAD = 4
MIN_WINDOW = 64

J = TypeVar("J")
R = TypeVar("R")


@dataclass(frozen=True)
class Retry:
    """A job the scheduler ran again because the worker holding it was lost."""

    job: str  # what the job was, for people: "seed 3", "double-click seed 3 · reference"
    lost_worker: str

    def line(self) -> str:
        return f"worker {self.lost_worker} lost while holding {self.job}: retried on another worker"

    def as_dict(self) -> dict[str, str]:
        return {"job": self.job, "lost_worker": self.lost_worker}


class ClusterPool:
    """Runs jobs on a `ClusterSession`; `on_retry` hears of each retry as it happens."""

    def __init__(
        self, session: ClusterSession, on_retry: Callable[[Retry], None] | None = None
    ) -> None:
        self.session = session
        self.on_retry = on_retry
        self.retried: list[Retry] = []
        self._names: dict[str, str] = {}  # future key -> job name, for jobs not yet finished
        self._lock = threading.Lock()
        self._subscribed = False

    # the same shape as `suite.Workers`, so `run_suite` and `detect` take either
    def __enter__(self) -> ClusterPool:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._subscribed:  # idempotent: `mutants` enters it as its pool too
            self._subscribed = False
            self.session.client.unsubscribe_topic("all")

    def run(
        self, jobs: Sequence[Job], on_result: Callable[[CaseResult], None] | None = None
    ) -> list[CaseResult]:
        """Suite jobs; results in job order, `on_result` as each finishes, run folders written."""
        results: list[CaseResult | None] = [None] * len(jobs)
        names = [_suite_job_name(job) for job in jobs]
        for index, shipped in self.unordered(run_shipped, jobs, names):
            if shipped.result.run_dir is not None:
                write_run_folder(shipped.result.run_dir, shipped.files)
            results[index] = shipped.result
            if on_result:
                on_result(shipped.result)
        return [r for r in results if r is not None]

    def sweep(self, jobs: Sequence[SweepJob]) -> Iterator[dict[str, Any]]:
        """Sweep jobs' summaries as they finish (not in seed order). Run folders stay on the
        workers' temporary folders: a sweep keeps summaries only."""
        remote = [SweepJob(j.scenario, j.seed, j.engine, None, j.scenario_path) for j in jobs]
        names = [f"seed {job.seed}" for job in jobs]
        for _, summary in self.unordered(run_job, remote, names):
            yield summary

    def unordered(
        self, fn: Callable[[J], R], jobs: Sequence[J], names: Sequence[str]
    ) -> Iterator[tuple[int, R]]:
        """(index, result) of each job as it finishes; `fn` must import on the workers."""
        from distributed import as_completed
        from distributed.client import FutureCancelledError

        self._listen()
        client = self.session.client
        batch = uuid.uuid4().hex[:12]
        keys = [f"paysim-{batch}-{n}" for n in range(len(jobs))]
        with self._lock:
            self._names.update(zip(keys, names, strict=True))
        index = {key: n for n, key in enumerate(keys)}
        waiting = iter(range(len(jobs)))
        running = as_completed(loop=client.loop)
        live: set[Any] = set()  # submitted, not yet consumed

        def submit(count: int) -> None:
            for n in itertools.islice(waiting, count):
                future = client.submit(fn, jobs[n], key=keys[n], pure=False)
                live.add(future)
                running.add(future)

        submit(self.window())
        try:
            for future in running:
                try:
                    result = future.result()
                except (FutureCancelledError, _killed_worker()) as exc:
                    raise ClusterError(
                        f"--cluster {self.session.address.text}: {names[index[future.key]]} "
                        f"was not run: {' '.join(str(exc).split())}"
                    ) from exc
                with self._lock:
                    self._names.pop(future.key, None)
                live.discard(future)
                future.release()
                submit(1)
                yield index[future.key], result
        finally:
            client.cancel([f for f in live if not f.done()])
            with self._lock:
                for key in keys:
                    self._names.pop(key, None)

    def window(self) -> int:
        """Jobs in flight at once: enough to keep every worker thread busy with a job queued
        behind it, few enough that a 100,000-seed sweep is not 100,000 scenarios in the
        scheduler's memory at once (each job carries its scenario)."""
        threads = sum(self.session.client.nthreads().values())
        return max(MIN_WINDOW, JOBS_PER_THREAD * threads)

    def _listen(self) -> None:
        if not self._subscribed:
            self.session.client.subscribe_topic("all", self._on_event)
            self._subscribed = True

    def _on_event(self, event: tuple[float, Any]) -> None:
        """Runs on the client's event loop: the scheduler removed a worker holding our jobs."""
        _, message = event
        if not isinstance(message, dict) or message.get("action") != "remove-worker":
            return
        worker = str(message.get("worker", "?"))
        with self._lock:
            # jobs it was running or queued, and finished jobs whose results were still on it
            lost = {
                *(message.get("processing-tasks") or ()),
                *(message.get("lost-computed-tasks") or ()),
            }
            hit = [
                Retry(self._names[key], worker)
                for key in sorted(lost, key=str)
                if key in self._names
            ]
            self.retried += hit
        for retry in hit:
            if self.on_retry:
                self.on_retry(retry)


def _killed_worker() -> type[BaseException]:
    from distributed.scheduler import KilledWorker

    return KilledWorker


def _suite_job_name(job: Job) -> str:
    engine = job.engine if isinstance(job.engine, str) else getattr(job.engine, "__qualname__", "?")
    return f"{job.case.stem or job.case.scenario.name} seed {job.case.seed} · {engine}"
