"""What a worker runs: the local job functions, with run folders sent back as bytes.

A worker may be on another machine with no path in common with the client, so a job that must
leave a run folder runs into the worker's own temporary folder and returns the folder's files;
the client writes them where the job said (`--out`). The bytes are the same a local run writes
(nothing in a run folder names the folder itself), so `paysim check` and `paysim report` work on
them. Two kinds of job name a folder: `suite.Job.run_dir` (the run folder) and
`sweep.SweepJob.out_dir` (the run folder is `out_dir/seed-N`). Their `coverage_dir` (`--coverage`)
is a client folder too: the worker measures into its own and sends the arcs back by module name
(`engine_coverage.portable_arcs`: the checkout may sit at another path there), and the client
adds them to the folder as a data file of its own.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any

from simulator.engine_coverage import PortableArcs, land_arcs, portable_arcs
from simulator.run_folder import staged
from simulator.suite import CaseResult, Job
from simulator.sweep import SweepJob

#: a run folder sent back is a few MB at most (history, charts, report); refuse anything absurd
MAX_SHIPPED_BYTES = 512 * 1024 * 1024


@dataclass(frozen=True)
class Shipped:
    """A job's result, and the run folder the client must write: where, and its files."""

    result: Any
    run_dir: str | None
    files: dict[str, bytes]
    coverage_dir: str | None = None  # the client's `--coverage` folder
    arcs: PortableArcs | None = None  # what the run reached of the engine, by module

    def land(self) -> Any:
        """Client side: write the run folder and the coverage data, return the result."""
        if self.run_dir is not None:
            write_run_folder(Path(self.run_dir), self.files)
        if self.coverage_dir is not None and self.arcs is not None:
            land_arcs(Path(self.coverage_dir), self.arcs)
        return self.result


def run_shipped(fn: Callable[[Any], Any], job: Any) -> Shipped:
    """Worker side: `fn(job)` with the job's run folder and coverage folder moved into a
    temporary folder here; nothing is written to a client path on the worker."""
    target = run_folder_of(job)
    measured = getattr(job, "coverage_dir", None)
    if target is None and measured is None:
        return Shipped(fn(job), None, {})
    with tempfile.TemporaryDirectory(prefix="paysim-worker-") as tmp:
        here = job if target is None else _redirected(job, Path(tmp) / "out")
        if measured is not None:
            here = replace(here, coverage_dir=str(Path(tmp) / "coverage"))
        result = fn(here)
        files = {}
        folder = run_folder_of(here)
        if target is not None and folder is not None:
            files = {
                path.relative_to(folder).as_posix(): path.read_bytes()
                for path in sorted(Path(folder).rglob("*"))
                if path.is_file()
            }
        arcs = portable_arcs(Path(tmp) / "coverage") if measured is not None else None
    if isinstance(result, CaseResult) and target is not None:
        result = replace(result, run_dir=Path(target))
    return Shipped(result, target, files, measured, arcs)


def run_folder_of(job: Any) -> str | None:
    """The run folder a job writes (a client path), None for a summary-only job."""
    if isinstance(job, Job):
        return job.run_dir
    if isinstance(job, SweepJob) and job.out_dir is not None:
        return str(Path(job.out_dir) / f"seed-{job.seed}")
    return None


def _redirected(job: Any, here: Path) -> Any:
    if isinstance(job, Job):
        return replace(job, run_dir=str(here))
    return replace(job, out_dir=str(here))


def write_run_folder(run_dir: Path, files: dict[str, bytes]) -> None:
    """Client side: the files a worker sent become `run_dir` (paths checked first: nothing lands
    outside it). Staged and moved in place as a local run is (`run_folder.staged`): an earlier
    run's files go, and a write cut short is marked INTERRUPTED."""
    if sum(len(data) for data in files.values()) > MAX_SHIPPED_BYTES:
        raise ValueError(f"{run_dir}: a worker sent more than {MAX_SHIPPED_BYTES} bytes")
    targets = {}
    for name in files:  # every path checked before anything is written
        parts = PurePosixPath(name).parts
        if not parts or PurePosixPath(name).is_absolute() or ".." in parts:
            raise ValueError(f"{run_dir}: a worker sent a file outside the run folder: {name!r}")
        targets[name] = parts
    with staged(run_dir) as stage:
        for name, parts in targets.items():
            target = stage.joinpath(*parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(files[name])
