"""The pytest plugin as a project would use it: `paysim_run` in its tests, failures as bug reports."""

from __future__ import annotations

import os
from importlib.metadata import entry_points
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

DATA = Path(__file__).parent / "data"
DUPLICATES = DATA / "scenarios" / "suite" / "duplicates.toml"
SLO_MISS = DATA / "scenarios" / "suite" / "slo_miss.toml"

#: installed packages register the plugin by entry point; a bare checkout needs `-p`
INSTALLED = any(e.name == "paysim" for e in entry_points(group="pytest11"))
PLUGIN_ARGS = () if INSTALLED else ("-p", "simulator.pytest_plugin")


def run(pytester: pytest.Pytester, source: str) -> pytest.RunResult:
    pytester.makepyfile(test_checkout=source.replace("DUPLICATES", repr(str(DUPLICATES))))
    return pytester.runpytest_inprocess(*PLUGIN_ARGS, "-p", "no:cacheprovider")


def test_the_reference_passes_and_a_mutant_fails_with_the_invariant_and_replay(
    pytester: pytest.Pytester,
) -> None:
    result = run(
        pytester,
        """
def test_reference(paysim_run):
    paysim_run(DUPLICATES).assert_passed()

def test_mutant(paysim_run):
    paysim_run(DUPLICATES, engine="mutant:no-transition-guard", seed=2).assert_passed()
""",
    )
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*paysim: duplicates on mutant:no-transition-guard (seed 2): fail*",
            "*violated no_double_completion (2×):*",
            "*- purchase * fulfilled 3 times*",
            "*seed: 2*",
            "*replay: paysim run *duplicates.toml --seed 2 --engine mutant:no-transition-guard*",
        ]
    )


def test_a_factory_and_a_scenario_object_work_and_the_helper_asserts(
    pytester: pytest.Pytester,
) -> None:
    result = run(
        pytester,
        """
from reference_impl.reference_engine import ReferenceEngine
from simulator.mutants import MUTANTS
from simulator.pytest_plugin import assert_paysim_passes
from simulator.scenario_file import load_scenario

def test_factory(paysim_run):
    report = paysim_run(load_scenario(DUPLICATES), engine=ReferenceEngine)
    assert report.verdict == "pass" and report.exit_code == 0
    assert (report.out_dir / "scenario.toml").is_file()
    assert_paysim_passes(report)

def test_helper_fails(paysim_run):
    bad = MUTANTS["no-transition-guard"].factory
    assert_paysim_passes(paysim_run(DUPLICATES, engine=bad))
""",
    )
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*violated no_double_completion*", "*replay: paysim run *"])


def test_thresholds_can_be_waived_and_a_bad_engine_is_an_error(
    pytester: pytest.Pytester,
) -> None:
    result = run(
        pytester,
        f"""
import pytest
from reference_impl.registry import UnknownEngine

def test_slo(paysim_run):
    report = paysim_run({str(SLO_MISS)!r})
    assert report.exit_code == 3
    report.assert_passed(thresholds=False)
    with pytest.raises(pytest.fail.Exception, match="threshold missed"):
        report.assert_passed()

def test_unknown_engine(paysim_run):
    with pytest.raises(UnknownEngine, match="nope"):
        paysim_run(DUPLICATES, engine="nope")
""",
    )
    result.assert_outcomes(passed=2)


def test_a_project_outside_the_repo_runs_shipped_and_rootdir_relative_scenarios(
    tmp_path: Path,
) -> None:
    """A user's own project: its own rootdir, its tests in a subfolder, pytest in a subprocess
    (no conftest, no path of this repository), the plugin found by its entry point."""
    import subprocess
    import sys

    project = tmp_path / "shop"
    (project / "tests").mkdir(parents=True)
    (project / "my_scenarios").mkdir()
    (project / "pytest.ini").write_text("[pytest]\n")
    (project / "my_scenarios" / "mine.toml").write_text(DUPLICATES.read_text())
    (project / "tests" / "test_payments.py").write_text(
        """
from pathlib import Path

def test_a_shipped_scenario_by_name(paysim_run):
    report = paysim_run("findings/seat-leak-abandoned-session")
    report.assert_passed()
    assert Path(report.summary["replay"].split()[2]).is_file()

def test_a_path_relative_to_the_rootdir(paysim_run):
    paysim_run("my_scenarios/mine.toml").assert_passed()

def test_a_missing_scenario_names_the_path(paysim_run):
    paysim_run("ci/no-such-scenario")
"""
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTEST_ADDOPTS")}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *PLUGIN_ARGS],
        cwd=project / "tests",
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert "1 failed, 2 passed" in result.stdout, result.stdout + result.stderr
    assert "ci/no-such-scenario: no such scenario file" in result.stdout
    assert "Traceback" not in result.stdout and "raise ScenarioError" not in result.stdout


@pytest.mark.parametrize(
    "name", ["ci/double-click", "ci/double-click.toml", "scenarios/ci/double-click.toml"]
)
def test_shipped_scenarios_resolve_by_name_from_anywhere(
    tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from simulator.pytest_plugin import resolve_scenario, shipped_scenarios

    monkeypatch.chdir(tmp_path)
    found = resolve_scenario(Path(name), tmp_path / "tests", tmp_path)
    assert found == shipped_scenarios() / "ci" / "double-click.toml"
    assert found.read_text() == (DATA.parent.parent / "scenarios/ci/double-click.toml").read_text()
