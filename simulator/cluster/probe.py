"""Before any job: every worker must run the same paysim and build the engine.

A `module:factory` that imports here may not import on a worker (another machine, another
folder, another virtualenv); finding out from the first job would fail a sweep midway, once per
worker. The probe runs `check_engine` on every worker (the same check the CLI runs here), which
also warms each worker's imports before the timed part of a sweep.
"""

from __future__ import annotations

import importlib.metadata
from typing import Any

from simulator.cluster.errors import ClusterError


def paysim_version() -> str:
    try:
        return importlib.metadata.version("paysim")
    except importlib.metadata.PackageNotFoundError:  # a source checkout that is not installed
        return "unknown"


def probe_engine(engine: str) -> dict[str, str]:
    """Worker side: this worker's paysim version and, if the engine does not build, why."""
    from reference_impl.registry import UnknownEngine
    from simulator.suite import check_engine

    try:
        check_engine(engine)
    except UnknownEngine as exc:
        return {"version": paysim_version(), "error": " ".join(str(exc).split())}
    return {"version": paysim_version(), "error": ""}


def check_workers(client: Any, engine: str, where: str) -> int:
    """Probe every worker; raises `ClusterError` (one line) unless all can run `engine`.

    Returns the number of workers probed.
    """
    answers = client.run(probe_engine, engine, on_error="return")
    if not answers:
        raise ClusterError(f"--cluster {where}: the scheduler has no workers")
    mine = paysim_version()
    for worker, answer in sorted(answers.items()):
        if isinstance(answer, BaseException):  # paysim itself did not import there
            detail = " ".join(f"{type(answer).__name__}: {answer}".split())
            raise ClusterError(f"--cluster {where}: worker {worker} cannot run paysim ({detail})")
        if answer["error"]:
            raise ClusterError(
                f"--engine {engine}: not importable on worker {worker} of --cluster {where}: "
                f"{answer['error']} (install it there, or start the worker where it imports)"
            )
        if answer["version"] != mine:
            raise ClusterError(
                f"--cluster {where}: worker {worker} runs paysim {answer['version']}, this "
                f"client {mine}: install the same version on every machine"
            )
    return len(answers)
