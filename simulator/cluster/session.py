"""Connect to a running Dask scheduler, or start a local cluster; always stop what was started.

`local:N` starts a scheduler and N worker processes (one thread each: a run is CPU-bound
Python, so threads in one process would only take turns on the GIL) on 127.0.0.1, every port
picked free, and closes all of it on the way out, error or not: nothing is left listening.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

from simulator.cluster.address import ClusterAddress, parse_address
from simulator.cluster.errors import ClusterError
from simulator.cluster.probe import check_workers

#: how long to wait for a scheduler to answer, and for a first worker to join it
CONNECT_TIMEOUT_S = 10.0


@dataclass
class ClusterSession:
    client: Any  # distributed.Client
    address: ClusterAddress
    scheduler: str  # the scheduler's tcp:// address (a local cluster's is picked at start)
    workers: int

    @property
    def label(self) -> str:
        if self.address.is_local:
            return f"{self.address.text} ({self.scheduler})"
        return self.scheduler


def import_distributed() -> Any:
    try:
        import distributed
    except ImportError as exc:
        raise ClusterError(
            f"--cluster needs Dask's distributed ({exc}): pip install 'paysim[cluster]'"
        ) from exc
    return distributed


def local_cluster(workers: int) -> Any:
    """A `distributed.LocalCluster` (a context manager): a scheduler and `workers` one-thread
    worker processes on 127.0.0.1, only errors logged.

    The workers' statistical profiler is off: it samples the running job's stack every 10 ms
    from another thread: 5 runs of 200 purchases took 1.05-1.07 times the CPU they take in the
    client's own process with it on, 0.96-0.98 times with it off (two trials each).
    """
    import dask

    distributed = import_distributed()
    with dask.config.set({"distributed.worker.profile.enabled": False}):
        # the nannies keep this config for the workers they start, and restart
        return distributed.LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            # the scheduler's HTTP server always starts (8787, or a warning and a random port
            # when taken): a free port from the start, on 127.0.0.1 with the rest
            dashboard_address=":0",
            worker_dashboard_address=None,
            silence_logs=logging.ERROR,
        )


@contextmanager
def open_session(text: str, engine: str) -> Iterator[ClusterSession]:
    """A client on the cluster `text` names, whose every worker has built `engine`."""
    address = parse_address(text)
    distributed = import_distributed()
    with ExitStack() as stack:
        if address.is_local:
            cluster = stack.enter_context(local_cluster(address.local_workers))
            scheduler = cluster.scheduler_address
        else:
            _reachable(address)
            scheduler = address.text
        try:
            client = stack.enter_context(
                distributed.Client(scheduler, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
            )
        except OSError as exc:  # a port that answers but is not a scheduler, or went away
            raise ClusterError(
                f"--cluster {text}: no Dask scheduler answered ({' '.join(str(exc).split())})"
            ) from exc
        try:
            client.wait_for_workers(1, timeout=CONNECT_TIMEOUT_S)
        except TimeoutError as exc:
            raise ClusterError(
                f"--cluster {text}: no worker joined the scheduler in {CONNECT_TIMEOUT_S:.0f} s"
            ) from exc
        workers = check_workers(client, engine, text)
        yield ClusterSession(client, address, scheduler, workers)


def _reachable(address: ClusterAddress) -> None:
    """Fail in one line, and fast, when nothing listens there (Dask would retry until timeout)."""
    try:
        with socket.create_connection((address.host, address.port), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        raise ClusterError(
            f"--cluster {address.text}: cannot reach a scheduler there "
            f"({exc.strerror or type(exc).__name__})"
        ) from exc
