"""One example of the guided search, as a worker process (or a cluster's worker) runs it.

A job is picklable values only; its result is the run's summary and the raw arcs the run reached
in each engine module, keyed by module name (a cluster's worker may keep its checkout under
another path). Turning arcs into points is the search's business, in its own process.
"""

from __future__ import annotations

import tempfile
import traceback
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from simulator.scenario import Scenario


@dataclass(frozen=True)
class GuidedJob:
    scenario: Scenario
    seed: int
    engine: str


@dataclass(frozen=True)
class GuidedRun:
    """What came back: the summary, and module -> raw arcs of the engine's code."""

    summary: dict[str, Any]
    arcs: dict[str, frozenset[tuple[int, int]]]
    #: the traceback when paysim itself raised on this scenario (a harness bug, not an engine's)
    error: str | None = None


def run_guided_job(job: GuidedJob) -> GuidedRun:
    """Run, measured, in a temporary folder nobody reads again; judged on invariants alone
    (vacuity is no bug in the engine, as in `explore.search`). An exception out of the run is
    paysim's own failure on a valid scenario: it comes back as `error`, not as a crash of the
    whole search."""
    from reference_impl.registry import load_factory
    from simulator.engine_coverage import engine_code
    from simulator.engines import EXTRA
    from simulator.guided.points import module_files, run_arcs
    from simulator.runner import run_scenario

    with tempfile.TemporaryDirectory(prefix="paysim-guided-") as tmp:
        data = Path(tmp) / "coverage"
        try:
            report = run_scenario(
                replace(job.scenario, expect=()), job.seed, job.engine, Path(tmp) / "run",
                coverage_dir=data,
            )  # fmt: skip
        except Exception:  # the search goes on; the scenario is kept to reproduce it
            return GuidedRun({}, {}, traceback.format_exc())
        files = _FILES.get(job.engine)
        if files is None:  # building an engine to learn its class costs: once per process
            files = _FILES[job.engine] = module_files(engine_code(load_factory(job.engine, EXTRA)))
        return GuidedRun(report.summary, run_arcs(data, files))


#: engine spec -> module -> file, per process
_FILES: dict[str, dict[str, str]] = {}
