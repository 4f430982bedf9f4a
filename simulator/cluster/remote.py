"""What a worker runs: the local job functions, with run folders sent back as bytes.

A worker may be on another machine with no path in common with the client, so a job that must
leave a run folder runs into the worker's own temporary folder and returns the folder's files;
the client writes them where `--out` says. The bytes are the same a local run writes (nothing in
a run folder names the folder itself), so `paysim check` and `paysim report` work on them.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

from simulator.run_folder import staged
from simulator.suite import CaseResult, Job, run_job

#: a run folder sent back is a few MB at most (history, charts, report); refuse anything absurd
MAX_SHIPPED_BYTES = 512 * 1024 * 1024


@dataclass(frozen=True)
class Shipped:
    """A job's result plus its run folder's files (path inside the folder -> bytes)."""

    result: CaseResult
    files: dict[str, bytes]


def run_shipped(job: Job) -> Shipped:
    """Worker side: `suite.run_job` into a temporary folder, returning the folder's files."""
    if job.run_dir is None:
        return Shipped(run_job(job), {})
    with tempfile.TemporaryDirectory(prefix="paysim-worker-") as tmp:
        local = Path(tmp) / "run"
        result = run_job(replace(job, run_dir=str(local)))
        files = {
            path.relative_to(local).as_posix(): path.read_bytes()
            for path in sorted(local.rglob("*"))
            if path.is_file()
        }
    return Shipped(replace(result, run_dir=Path(job.run_dir)), files)


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
