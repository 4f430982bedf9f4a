"""Jobs to the cluster's workers, results back as they finish, lost workers' jobs reported.

Another executor of the interface `sweep.LocalPool` offers (`submit(fn, job, wall_clock=...)`
-> `concurrent.futures.Future`), so `sweep`, `suite.Workers` and `detect` run the same jobs
through the same functions on it: only where they run changes, so histories are the same bytes.
Jobs wait here and go out as workers free up (`window`): a 100,000-seed sweep does not put
100,000 scenarios in the scheduler at once. A job runs on whichever worker the scheduler picks; when a worker dies, the scheduler
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
from collections import deque
from collections.abc import Callable
from concurrent.futures import CancelledError, Future
from dataclasses import dataclass
from typing import Any, TypeVar

from simulator.cluster.errors import ClusterError
from simulator.cluster.remote import run_shipped
from simulator.cluster.session import ClusterSession
from simulator.suite import Job, engine_label
from simulator.sweep import SweepJob

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


@dataclass
class _Pending:
    key: str
    fn: Callable[[Any], Any]
    job: Any
    result: Future[Any]
    name: str


class ClusterPool:
    """Runs jobs on a `ClusterSession`; `on_retry` hears of each retry as it happens."""

    def __init__(
        self, session: ClusterSession, on_retry: Callable[[Retry], None] | None = None
    ) -> None:
        self.session = session
        self.on_retry = on_retry
        self.retried: list[Retry] = []
        self._batch = uuid.uuid4().hex[:12]
        self._count = itertools.count()
        self._waiting: deque[_Pending] = deque()
        self._running: dict[str, tuple[_Pending, Any]] = {}  # key -> (job, dask future)
        self._window: int | None = None
        self._lock = threading.RLock()
        self._subscribed = False
        self._closed = False

    def __enter__(self) -> ClusterPool:
        return self

    def __exit__(self, *exc: object) -> None:
        """Cancel what has not finished (as `LocalPool` does); idempotent."""
        with self._lock:
            self._closed = True
            waiting, self._waiting = list(self._waiting), deque()
            running, self._running = list(self._running.values()), {}
        for pending in waiting:
            pending.result.cancel()
        if running:
            self.session.client.cancel([remote for _, remote in running])
        for pending, _ in running:  # a running Future cannot be cancelled: fail it instead
            if not pending.result.done():
                pending.result.set_exception(CancelledError(f"{pending.name}: pool closed"))
        if self._subscribed:
            self._subscribed = False
            self.session.client.unsubscribe_topic("all")

    def submit(self, fn: Callable[[J], R], job: J, *, wall_clock: bool = False) -> Future[R]:
        """`fn(job)` on a worker, its run folder (if the job has one) written here when done.

        `wall_clock` (a Redis-locked run) changes nothing here: on a cluster it takes a worker
        thread like any run, and the cluster's size is its owner's to choose."""
        if self._window is None:
            self._listen()
            threads = sum(self.session.client.nthreads().values())
            self._window = max(MIN_WINDOW, JOBS_PER_THREAD * threads)
        result: Future[R] = Future()
        key = f"paysim-{self._batch}-{next(self._count)}"
        with self._lock:
            if self._closed:
                raise RuntimeError("the cluster pool is closed")
            self._waiting.append(_Pending(key, fn, job, result, job_name(job)))
        self._send()
        return result

    def window(self) -> int:
        """Jobs in flight at once: enough to keep every worker thread busy with jobs queued
        behind it (counted when the first job is submitted), at least `MIN_WINDOW`."""
        return self._window or MIN_WINDOW

    def _send(self) -> None:
        client = self.session.client
        while True:
            with self._lock:
                if self._closed or not self._waiting or len(self._running) >= self.window():
                    return
                pending = self._waiting.popleft()
                if not pending.result.set_running_or_notify_cancel():
                    continue  # cancelled while it waited
                remote = client.submit(
                    run_shipped, pending.fn, pending.job, key=pending.key, pure=False
                )
                self._running[pending.key] = (pending, remote)
            remote.add_done_callback(self._finished)

    def _finished(self, remote: Any) -> None:
        """Runs on a Dask client thread: hand the result on, write its run folder, send more."""
        with self._lock:
            entry = self._running.pop(remote.key, None)
        if entry is None:  # cancelled by __exit__
            return
        pending = entry[0]
        try:
            value = remote.result().land()
        except BaseException as exc:  # the job's own error, or the cluster's
            pending.result.set_exception(self._explained(pending, exc))
        else:
            pending.result.set_result(value)
        finally:
            remote.release()
        self._send()

    def _explained(self, pending: _Pending, exc: BaseException) -> BaseException:
        """A job the cluster could not run (cancelled, every worker it met died) as one line."""
        from distributed.client import FutureCancelledError
        from distributed.scheduler import KilledWorker

        if isinstance(exc, FutureCancelledError | KilledWorker):
            return ClusterError(
                f"--cluster {self.session.address.text}: {pending.name} was not run: "
                f"{' '.join(str(exc).split())}"
            )
        return exc

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
        # jobs it was running or queued, and finished jobs whose results were still on it
        lost = {
            *(message.get("processing-tasks") or ()),
            *(message.get("lost-computed-tasks") or ()),
        }
        with self._lock:
            hit = [
                Retry(self._running[key][0].name, worker)
                for key in sorted(lost, key=str)
                if key in self._running
            ]
            self.retried += hit
        for retry in hit:
            if self.on_retry:
                self.on_retry(retry)


def job_name(job: Any) -> str:
    """A job for people, in retry lines: "seed 3", "double-click seed 3 · reference"."""
    if isinstance(job, SweepJob):
        return f"seed {job.seed}"
    if isinstance(job, Job):
        name = job.case.stem or job.case.scenario.name
        return f"{name} seed {job.case.seed} · {engine_label(job.engine)}"
    return type(job).__name__
