"""pytest plugin: run paysim scenarios from a project's own test suite.

    def test_checkout_survives_duplicates(paysim_run):
        report = paysim_run("ci/double-click", engine="my_app.payments:factory")
        report.assert_passed()

`paysim_run(scenario, engine="reference", seed=None, report=False)` runs in the test's
`tmp_path` and returns a `PaysimReport` (a `RunReport` with `assert_passed()`). `scenario` is a
`Scenario` or a TOML path (relative to the test file's folder, pytest's rootdir or the current
directory), or a scenario shipped with paysim by name: `paysim_run("ci/double-click")`;
`engine` a name, `module:factory` or the factory itself; `seed` defaults to the scenario's first;
`report=True` also draws the charts and report.html. A failed assertion shows each violated
invariant with its details, the seed and the replay command — the test's output is the bug report.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from reference_impl.ports import EngineFactory
    from simulator.runner import RunReport
    from simulator.scenario import Scenario

# pytest loads this module in every session of a project that installs paysim: the simulator
# itself (trio, stripe, matplotlib) is imported only when a test asks for `paysim_run`.

#: violations shown per invariant in a failure message; the rest are counted
MAX_DETAILS = 5


@functools.cache
def report_type() -> type[RunReport]:
    """`PaysimReport`: a `RunReport` with `assert_passed()` (built on first use, see above)."""
    from simulator.runner import RunReport

    class PaysimReport(RunReport):
        """A run's report, with an assertion that explains a failure."""

        def assert_passed(self, *, thresholds: bool = True) -> None:
            assert_paysim_passes(self, thresholds=thresholds)

    return PaysimReport


def failure_message(report: RunReport, *, thresholds: bool = True) -> str | None:
    """Why a run does not pass, in the words of a bug report; None when it passes."""
    from simulator.suite import exit_code_of

    summary = report.summary
    code = exit_code_of(summary)
    if code == 0 or (code == 3 and not thresholds):
        return None
    lines = [
        f"paysim: {summary['scenario']} on {summary['engine']} (seed {summary['seed']}): "
        + ("thresholds missed" if code == 3 else str(summary["verdict"]))
    ]
    violations = summary.get("violations") or []
    for name in sorted({v["invariant"] for v in violations}):
        mine = [v for v in violations if v["invariant"] == name]
        lines.append(f"  violated {name} ({len(mine)}×):")
        lines += [f"    - {v['detail']}" for v in mine[:MAX_DETAILS]]
        if len(mine) > MAX_DETAILS:
            lines.append(f"    … and {len(mine) - MAX_DETAILS} more")
    lines += [f"  vacuous: {text}" for text in summary.get("vacuous") or []]
    lines += [
        f"  unknown {name}: the checker could not decide"
        for name, status in sorted((summary.get("invariants") or {}).items())
        if status == "unknown"
    ]
    lines += [f"  threshold missed: {miss}" for miss in summary["thresholds"].get("misses") or []]
    lines.append(f"  seed: {summary['seed']}")
    lines.append(f"  replay: {summary['replay']}")
    lines.append(f"  run folder: {report.out_dir}")
    return "\n".join(lines)


def assert_paysim_passes(report: RunReport, *, thresholds: bool = True) -> None:
    """Fail the test unless every invariant held (and, with `thresholds`, every SLO was met)."""
    message = failure_message(report, thresholds=thresholds)
    if message is not None:
        pytest.fail(message, pytrace=False)


PaysimRun = Callable[..., Any]


@pytest.fixture
def paysim_run(request: pytest.FixtureRequest, tmp_path: Path) -> PaysimRun:
    """Factory fixture: `paysim_run(scenario, engine=..., seed=...)` → `PaysimReport`."""
    from simulator.suite import check_engine, run_case, slug

    runs = {"n": 0}

    def run(
        scenario: Scenario | str | Path,
        engine: str | EngineFactory = "reference",
        seed: int | None = None,
        *,
        report: bool = False,
    ) -> Any:
        loaded, path = _scenario(scenario, Path(request.path).parent, request.config.rootpath)
        check_engine(engine)
        chosen = loaded.seeds[0] if seed is None else seed
        runs["n"] += 1
        label = engine if isinstance(engine, str) else getattr(engine, "__name__", "engine")
        run_dir = tmp_path / f"paysim-{runs['n']}-{slug(loaded.name)}-{slug(label)}-seed-{chosen}"
        result = run_case(loaded, chosen, engine, run_dir, scenario_path=path, report=report)
        return report_type()(result.run, result.judgement, result.summary, result.out_dir)

    return run


def _scenario(
    scenario: Scenario | str | Path, test_dir: Path, rootdir: Path
) -> tuple[Scenario, str | None]:
    from simulator.scenario import Scenario
    from simulator.scenario_file import ScenarioError, load_scenario

    if isinstance(scenario, Scenario):
        return scenario, None
    path = resolve_scenario(Path(scenario), test_dir, rootdir)
    try:
        return load_scenario(path), str(path)
    except ScenarioError as exc:  # the user's input: one line, not the loader's traceback
        pytest.fail(f"paysim: {exc}", pytrace=False)


def shipped_scenarios() -> Path:
    """The scenarios installed with paysim (scenarios/ in the repository: ci/, findings/, load/)."""
    from importlib.resources import files

    return Path(str(files("simulator") / "shipped_scenarios"))


def resolve_scenario(path: Path, test_dir: Path, rootdir: Path) -> Path:
    """A scenario path as a user writes it: relative to the test file's folder, to pytest's
    rootdir or to the current directory; else one of the shipped scenarios, named with or
    without `scenarios/` and `.toml` (`"ci/double-click"`). Not found: the path as given, so
    that the error names it."""
    if path.is_absolute():
        return path
    for base in (test_dir, rootdir, Path.cwd()):
        if (base / path).is_file():
            return base / path
    shipped = shipped_scenarios()
    name = path.with_suffix(".toml") if path.suffix != ".toml" else path
    parts = name.parts[1:] if name.parts[:1] == ("scenarios",) else name.parts
    candidate = shipped.joinpath(*parts) if parts else shipped
    return candidate if candidate.is_file() else path
