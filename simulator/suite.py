"""Suites: scenario files × seeds, each run leaving a complete run folder, and one exit code.

`paysim run`, `paysim suite`, `paysim mutants`, the demo and the pytest plugin all go through
here, so every run folder has the same files (summary.json, history.jsonl, charts/*.png,
report.html, scenario.toml) and `paysim check` / `paysim report` work on any of them.

The engine is checked once up front (`check_engine`): resolved, then built on a probe
environment, so a wrong `module:factory` or a factory that returns something that is not an
engine is bad input (exit 2) before any output folder exists — not a crash mid-suite.
"""

from __future__ import annotations

import re
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reference_impl.ports import Engine, EngineEnv, EngineFactory
from reference_impl.registry import UnknownEngine
from simulator.engines import resolve
from simulator.run_folder import staged
from simulator.runner import RunReport, run_scenario
from simulator.scenario import Scenario
from simulator.scenario_file import ScenarioError, load_scenario, scenario_to_toml
from simulator.sweep import LocalPool, is_wall_clock

ENGINE_METHODS = ("create_purchase", "handle_webhook", "cancel_purchase", "reconcile")

# ---------------------------------------------------------------- engines


def check_engine(engine: str | EngineFactory) -> EngineFactory:
    """The engine's factory, proven to build an `Engine`; raises `UnknownEngine` (one line)."""
    factory = resolve(engine) if isinstance(engine, str) else engine
    name = engine if isinstance(engine, str) else getattr(engine, "__qualname__", repr(engine))
    try:
        built = factory(probe_env())
    except Exception as exc:  # a user's factory may raise anything; it is their bad input
        raise UnknownEngine(
            f"engine {name!r}: the factory raised {type(exc).__name__} on a probe environment: "
            f"{' '.join(str(exc).split())}"
        ) from exc
    if not isinstance(built, Engine):
        missing = [m for m in ENGINE_METHODS if not callable(getattr(built, m, None))]
        raise UnknownEngine(
            f"engine {name!r}: the factory returned {type(built).__name__}, not an Engine "
            f"(missing {', '.join(missing)})"
        )
    return factory


def probe_env() -> EngineEnv:
    """Ports good enough to construct an engine (never to run one): no I/O, no real store."""
    import stripe

    from reference_impl.embedded_store import client
    from reference_impl.memory_locks import MemoryLockService
    from reference_impl.store import AsyncDatabase
    from simulator.clock import SimClock
    from simulator.ids import SequentialIds
    from simulator.services import FakeEmail, RecordingFulfilment

    # the embedded store itself: `open_database` would drop a database at a real MONGODB_URI
    return EngineEnv(
        store=AsyncDatabase(client()["paysim_probe"]),
        locks=MemoryLockService(),
        stripe=stripe.StripeClient("sk_test_paysim_probe"),
        webhook_secret="whsec_paysim_probe",
        fulfilment=RecordingFulfilment(),
        email=FakeEmail(),
        clock=SimClock(),
        ids=SequentialIds("probe"),
    )


def engine_label(engine: str | EngineFactory) -> str:
    """The engine's name as summaries show it (a factory object: `module:qualname`)."""
    if isinstance(engine, str):
        return engine
    return f"{engine.__module__}:{getattr(engine, '__qualname__', type(engine).__name__)}"


def slug(text: str) -> str:
    """A folder name for an engine or scenario: `mutant:no-x` → `mutant_no-x`."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "_"


# ---------------------------------------------------------------- cases


@dataclass(frozen=True)
class Case:
    """One scenario under one seed; `path` is the file as given (the replay command uses it)."""

    scenario: Scenario
    path: str
    seed: int
    stem: str  # the file's path inside the suite folder, without `.toml`: names its run folders


def suite_files(directory: Path) -> list[Path]:
    """Scenario files of a suite folder (and its subfolders), in a stable order."""
    if not directory.is_dir():
        raise ScenarioError(str(directory), "", "not a folder of scenario files")
    files = sorted(directory.rglob("*.toml"))
    if not files:
        raise ScenarioError(str(directory), "", "no *.toml scenario files in this folder")
    return files


def load_suite(directory: Path) -> list[tuple[Path, Scenario]]:
    """Every scenario of the suite, all validated before anything runs."""
    return [(path, load_scenario(path)) for path in suite_files(directory)]


def seeds_for(scenario: Scenario, count: int | None) -> tuple[int, ...]:
    """`count` given: seeds 1..count (the same for every scenario); else the scenario's `seeds`."""
    return tuple(range(1, count + 1)) if count is not None else scenario.seeds


def suite_cases(
    scenarios: Sequence[tuple[Path, Scenario]], directory: Path, seeds: int | None
) -> list[Case]:
    cases = []
    for path, scenario in scenarios:
        stem = path.relative_to(directory).with_suffix("").as_posix()
        cases += [Case(scenario, str(path), seed, stem) for seed in seeds_for(scenario, seeds)]
    return cases


# ---------------------------------------------------------------- one run


@dataclass
class CaseResult:
    """What a suite keeps of a run: its summary and where its folder is (picklable)."""

    summary: dict[str, Any]
    run_dir: Path | None
    scenario_path: str
    expected_fail: bool = False  # the scenario lists this engine in `expect_fail`
    seconds: float = 0.0  # wall time of the whole job: simulation, checkers, charts, report

    @property
    def exit_code(self) -> int:
        return exit_code_of(self.summary)


def exit_code_of(summary: dict[str, Any]) -> int:
    """1 invariant violated, vacuous or unknown; 3 thresholds missed; 4 incomplete (the run's
    own infrastructure failed: no verdict on the engine); 0 all good."""
    if summary["verdict"] == "incomplete":
        return 4
    if summary["verdict"] != "pass":
        return 1
    return 0 if summary["thresholds"]["met"] else 3


def worst(codes: Iterable[int]) -> int:
    """A suite's exit code: 2, then 1 (an engine bug found anywhere), then 4 (a run could not
    be judged), then 3, then 0."""
    codes = set(codes)
    return next((c for c in (2, 1, 4, 3) if c in codes), 0)


#: which runs get PNG charts in their report: every run, only those that did not pass (the ones
#: a CI reader opens: drawing charts costs thirty times a CI run's simulation), or none
CHARTS = ("all", "failing", "none")


def wants_charts(policy: str, summary: dict[str, Any]) -> bool:
    return policy == "all" or (policy == "failing" and exit_code_of(summary) != 0)


def run_case(
    scenario: Scenario,
    seed: int,
    engine: str | EngineFactory,
    run_dir: Path,
    *,
    scenario_path: str | None = None,
    report: bool = True,
    charts: str = "all",
    wall_clock: bool = False,
    coverage_dir: Path | None = None,
) -> RunReport:
    """Run into `run_dir` with scenario.toml always, report.html when `report`, with charts as
    the `charts` policy says (CHARTS).

    Without a `scenario_path` the replay command names the run's own scenario.toml. The run is
    written to a fresh folder moved in place at the end (`run_folder.staged`): an earlier run's
    files never mix with this one's, and an interrupted run is marked so.
    """
    toml = scenario_to_toml(scenario)
    target = scenario_path or str(run_dir / "scenario.toml")
    with staged(run_dir) as stage:
        (stage / "scenario.toml").write_text(toml, encoding="utf-8")
        result = run_scenario(
            scenario,
            seed,
            engine,
            stage,
            scenario_path=target,
            wall_clock=wall_clock,
            coverage_dir=coverage_dir,
        )
        if report:
            render(stage, result.summary, toml, charts=charts)
    result.out_dir = result.run.out_dir = run_dir
    return result


def render(
    run_dir: Path, summary: dict[str, Any], scenario_toml: str | None, *, charts: str = "all"
) -> Path:
    """Charts first (write_report would keep stale ones from an earlier run), then the page;
    `charts`: the policy (CHARTS) that says whether this run gets them."""
    from simulator.report_html import write_report

    drawn = wants_charts(charts, summary)
    if drawn:
        from simulator.charts import make_charts  # matplotlib: only where charts are drawn

        make_charts(run_dir)
    return write_report(run_dir, summary, scenario_toml, charts=drawn, policy=charts)


@dataclass(frozen=True)
class Job:
    case: Case
    engine: str | EngineFactory
    run_dir: str | None  # None: a throwaway run (summary only)
    coverage_dir: str | None = None  # measure the engine's code: a data file in this folder
    charts: str = "all"  # which runs' reports get charts (CHARTS)


def expects_failure(scenario: Scenario, engine: str | EngineFactory) -> bool:
    """Does the scenario declare (`expect_fail`) that this engine fails it?"""
    return engine_label(engine) in scenario.expect_fail


def run_job(job: Job) -> CaseResult:
    """One run, in this process or a worker."""
    case = job.case
    expected = expects_failure(case.scenario, job.engine)
    started = time.perf_counter()
    cov = Path(job.coverage_dir) if job.coverage_dir else None
    if job.run_dir is None:
        with tempfile.TemporaryDirectory(prefix="paysim-") as tmp:
            report = run_scenario(
                case.scenario,
                case.seed,
                job.engine,
                Path(tmp),
                scenario_path=case.path,
                coverage_dir=cov,
            )
        return CaseResult(report.summary, None, case.path, expected, time.perf_counter() - started)
    run_dir = Path(job.run_dir)
    report = run_case(
        case.scenario,
        case.seed,
        job.engine,
        run_dir,
        scenario_path=case.path,
        charts=job.charts,
        coverage_dir=cov,
    )
    return CaseResult(report.summary, run_dir, case.path, expected, time.perf_counter() - started)


def run_dir_for(out_dir: Path, engine: str | EngineFactory, case: Case) -> Path:
    return out_dir / slug(engine_label(engine)) / case.stem / f"seed-{case.seed}"


# ---------------------------------------------------------------- many runs


class Workers:
    """Runs suite jobs on a `sweep.LocalPool` (this process with 1 worker), kept across calls."""

    def __init__(self, workers: int, pool: Any = None) -> None:
        """`pool`: another executor with `LocalPool.submit`'s shape (`--cluster`'s) instead."""
        self.workers = max(1, workers)
        self._pool = pool if pool is not None else LocalPool(self.workers)

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc: object) -> None:
        self._pool.__exit__(*exc)

    def submit(self, job: Job) -> Future[CaseResult]:
        if not isinstance(job.engine, str):
            # a factory object (pytest plugin) cannot cross a process boundary: run it here
            return LocalPool(1).submit(run_job, job)
        return self._pool.submit(run_job, job, wall_clock=is_wall_clock(job.case.scenario))

    def run(
        self, jobs: Sequence[Job], on_result: Callable[[CaseResult], None] | None = None
    ) -> list[CaseResult]:
        """Results in job order; `on_result` is called as each finishes (progress bars): with
        one worker each job runs at its `submit`, so it is reported right then, in job order."""
        results: list[CaseResult | None] = [None] * len(jobs)
        futures: dict[Future[CaseResult], int] = {}

        def finished(n: int, future: Future[CaseResult]) -> None:
            results[n] = result = future.result()
            if on_result:
                on_result(result)

        for n, job in enumerate(jobs):
            future = self.submit(job)
            if future.done():
                finished(n, future)
            else:
                futures[future] = n
        for future in as_completed(futures):
            finished(futures[future], future)
        return [r for r in results if r is not None]


def run_suite(
    cases: Sequence[Case],
    engine: str | EngineFactory,
    out_dir: Path,
    *,
    workers: int = 1,
    on_result: Callable[[CaseResult], None] | None = None,
    executor: Any = None,
    coverage_dir: Path | None = None,
    charts: str = "all",
) -> list[CaseResult]:
    """Every case into its own run folder under `out_dir/<engine>/<scenario>/seed-<n>`.

    `executor`: where to run them instead of local processes (`Workers`' `pool`);
    `coverage_dir`: measure the engine's code, a data file per run in that folder;
    `charts`: which runs' reports get charts (CHARTS)."""
    cov = str(coverage_dir) if coverage_dir else None
    jobs = [
        Job(case, engine, str(run_dir_for(out_dir, engine, case)), cov, charts) for case in cases
    ]
    with Workers(workers, executor) as pool:
        return pool.run(jobs, on_result)


def index_rows(results: Iterable[CaseResult]) -> list[dict[str, Any]]:
    """The rows `suite_index.write_index` wants: each summary plus its report's path."""
    return [
        {
            **r.summary,
            "run_dir": str(r.run_dir.resolve()),
            "scenario_path": r.scenario_path,
            "expected_fail": r.expected_fail,
        }
        for r in results
        if r.run_dir is not None
    ]


# ---------------------------------------------------------------- mutation testing


def caught_by(summary: dict[str, Any]) -> list[str]:
    """Invariants a run saw violated (vacuity alone is not a catch: it blames the scenario)."""
    return sorted({v["invariant"] for v in summary.get("violations") or []})
