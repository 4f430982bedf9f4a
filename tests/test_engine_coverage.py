"""`--coverage`: which of the engine's own lines and branches a run or a suite reached."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

from click.testing import CliRunner

from reference_impl.reference_engine import ReferenceEngine
from reference_impl.seed_engine import SeedEngine
from simulator.cli import main
from simulator.engine_coverage import (
    DATA_PREFIX,
    combine,
    engine_code,
    reached_arcs,
    summary_line,
)
from simulator.mutants import MUTANTS
from simulator.report_coverage import MAX_LISTED
from simulator.runner import run_scenario
from simulator.scenario_file import load_scenario
from tests.redishelpers import redis_server, redis_url  # noqa: F401
from tests.suitehelpers import suite_runs

SCENARIO = Path("scenarios/ci/pay-after-cancel.toml")


def names(files: tuple[str, ...]) -> list[str]:
    return [Path(f).name for f in files]


def test_the_engine_is_its_own_modules_not_the_harness() -> None:
    assert names(engine_code(ReferenceEngine).files) == ["reference_engine.py", "seats.py"]
    assert names(engine_code(SeedEngine).files) == ["seed_engine.py"]
    mutant = engine_code(MUTANTS["ignore-expired"].factory)
    assert names(mutant.files) == ["mutants.py", "reference_engine.py", "seats.py"]

    def factory(env: object) -> ReferenceEngine:  # a module:factory function: its class counts
        return ReferenceEngine(env)  # type: ignore[arg-type]

    assert names(engine_code(factory).files) == ["reference_engine.py", "seats.py"]


def test_runs_measured_into_one_folder_combine_and_list_what_never_ran(tmp_path: Path) -> None:
    scenario = load_scenario(SCENARIO)
    code = engine_code(ReferenceEngine)
    one, both = tmp_path / "one", tmp_path / "both"
    run_scenario(scenario, 1, "reference", tmp_path / "r1", coverage_dir=one)
    run_scenario(scenario, 1, "reference", tmp_path / "r1b", coverage_dir=both)
    seed_engine_run = load_scenario(Path("scenarios/ci/stripe-outage.toml"))
    run_scenario(seed_engine_run, 1, "reference", tmp_path / "r2", coverage_dir=both)
    assert len(list(both.glob(DATA_PREFIX + ".*"))) == 2  # one data file per run
    alone = combine(one, code, tmp_path / "one.json")
    union = combine(both, code, tmp_path / "both.json")
    assert 0 < alone["branches_reached"] < union["branches_reached"] <= union["branches"]
    assert alone["branches"] == union["branches"]
    assert union["branch_percent"] == round(
        100.0 * union["branches_reached"] / union["branches"], 2
    )
    assert reached_arcs(one) < reached_arcs(both)
    entry = union["files"]["reference_impl/reference_engine.py"]
    source = Path("reference_impl/reference_engine.py").read_text().splitlines()
    assert entry["unreached_lines"], "a two-run suite cannot reach every line"
    for unreached in entry["unreached_lines"]:
        assert source[unreached["line"] - 1].strip() == unreached["source"]
        # lines a bare import runs were measured (in a fresh interpreter), so never listed
        assert not unreached["source"].startswith(("def ", "async def ", "class "))
    for branch in entry["unreached_branches"]:
        assert source[branch["from"] - 1].strip() == branch["source"]
    assert json.loads((tmp_path / "both.json").read_text()) == union


def test_paysim_run_coverage_writes_the_file_and_the_report_section(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = CliRunner().invoke(
        main, ["run", str(SCENARIO), "--coverage", "--out", str(out)], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    report = json.loads((out / "coverage.json").read_text())
    assert report["modules"] == ["reference_impl.reference_engine", "reference_impl.seats"]
    assert f"of {report['branches']} branches" in result.output
    html = (out / "report.html").read_text()
    assert "Engine coverage" in html and "branch never taken" in html
    first = report["files"]["reference_impl/reference_engine.py"]["unreached_lines"][0]
    assert f"<td class=num>{first['line']}</td>" in html
    assert "What was tested" in html


def test_without_the_flag_nothing_is_measured(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["run", str(SCENARIO), "--out", str(out)])
    assert result.exit_code == 0
    assert not (out / "coverage.json").exists() and not (out / "coverage-data").exists()
    assert "Engine coverage" not in (out / "report.html").read_text()


def test_the_suite_report_shows_the_figure_and_every_unreached_line(tmp_path: Path) -> None:
    suite = tmp_path / "suite"
    suite.mkdir()
    shutil.copy(SCENARIO, suite)
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main,
        ["suite", str(suite), "--seeds", "1", "--coverage", "--workers", "1", "--out", str(out)],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    report = json.loads((out / "coverage.json").read_text())
    assert summary_line(report) in result.output
    index = (out / "index.html").read_text()
    assert "Engine coverage" in index
    assert f"{report['branches_reached']} of {report['branches']} branches reached" in index
    for entry in report["files"].values():
        listed = entry["unreached_lines"][:MAX_LISTED]  # the page lists that many per file
        for unreached in listed:
            assert f"<td class=num>{unreached['line']}</td>" in index
        more = len(entry["unreached_lines"]) + len(entry["unreached_branches"]) - MAX_LISTED
        assert (f"… and {more} more" in index) == (more > 0)


def test_the_ci_suite_reaches_95_percent_of_the_reference_branches(
    tmp_path: Path,
    redis_url: str,  # noqa: F811
) -> None:
    """Issue 12's bar, on the suite as CI runs it (its Redis scenarios reach a fenced path the
    others do not): every reference run passes, and the runs together reach at least 95 % of
    the reference engine's branches."""
    data = tmp_path / "coverage-data"
    for n, (path, scenario, seed) in enumerate(suite_runs(virtual_only=False)):
        if scenario.topology.locks == "redis":
            scenario = replace(scenario, topology=replace(scenario.topology, redis_url=redis_url))
        summary = run_scenario(
            scenario, seed, "reference", tmp_path / str(n), coverage_dir=data
        ).summary
        assert summary["verdict"] == "pass", (path.stem, seed, summary["violations"])
    figure = combine(data, engine_code(ReferenceEngine), tmp_path / "coverage.json")
    assert figure["branch_percent"] >= 95.0, summary_line(figure)


def test_branches_are_counted_as_coverage_py_counts_them_whatever_ran(tmp_path: Path) -> None:
    """coverage.json counts branches from coverage.py's lists (as the guided search counts its
    points); they agree with coverage.py's own summary only while no engine line says `pragma:
    no branch`, whose arcs the summary counts and the lists leave out. And a total must not
    depend on what a run reached: a baseline is compared with the engine's source by it."""
    for path in engine_code(ReferenceEngine).files:
        assert "pragma: no branch" not in Path(path).read_text(), path
    code = engine_code(ReferenceEngine)
    data = tmp_path / "data"
    run_scenario(load_scenario(SCENARIO), 1, "reference", tmp_path / "r", coverage_dir=data)
    figure = combine(data, code, tmp_path / "c.json")
    empty = combine(tmp_path / "nothing", code, tmp_path / "e.json")  # a bare import alone
    assert figure["branches"] == empty["branches"] > figure["branches_reached"]
    import coverage

    cov = coverage.Coverage(
        data_file=str(data / DATA_PREFIX), branch=True, include=list(code.files), config_file=False
    )
    cov.combine([str(data)], keep=True)
    cov.json_report(outfile=str(tmp_path / "raw.json"))
    summaries = [
        f["summary"] for f in json.loads((tmp_path / "raw.json").read_text())["files"].values()
    ]
    assert figure["branches"] == sum(s["num_branches"] for s in summaries)
    assert figure["branches_reached"] == sum(s["covered_branches"] for s in summaries)
