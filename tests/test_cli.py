"""The `paysim` CLI as CI and engineers use it: exit codes, one-line errors, JSON, stored runs."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from simulator.cli import main
from simulator.mutants import MUTANTS

DATA = Path(__file__).parent / "data"
SUITE = DATA / "scenarios" / "suite"
DUPLICATES = SUITE / "duplicates.toml"  # reference passes; no-transition-guard double-fulfils
SLO_MISS = SUITE / "slo_miss.toml"  # contended, with mean_wait_ms = 0: thresholds missed
UNKNOWN_KEY = DATA / "scenarios" / "bad" / "unknown_key.toml"
RUN_FILES = ("summary.json", "history.jsonl", "report.html", "scenario.toml")


def paysim(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def assert_run_folder(run_dir: Path, *, charts: bool = True) -> None:
    for name in RUN_FILES:
        assert (run_dir / name).is_file(), name
    if charts:
        assert len(list((run_dir / "charts").glob("*.png"))) >= 4
        assert "data:image/png;base64," in (run_dir / "report.html").read_text()
    else:
        assert not (run_dir / "charts").exists()
        page = (run_dir / "report.html").read_text()
        assert "Not drawn: this run passed" in page and "data:image/png" not in page


@pytest.fixture(scope="module")
def failing_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Result, Path]:
    out = tmp_path_factory.mktemp("cli") / "fail"
    return paysim("run", DUPLICATES, "--engine", "mutant:no-transition-guard", "--out", out), out


# ---- exit codes


def test_a_passing_run_exits_0_and_writes_a_complete_run_folder(tmp_path: Path) -> None:
    result = paysim("run", DUPLICATES, "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("PASS")
    assert_run_folder(tmp_path / "run")


def test_a_violated_invariant_exits_1_with_the_seed_and_the_replay_command(
    failing_run: tuple[Result, Path],
) -> None:
    result, out = failing_run
    assert result.exit_code == 1
    assert "violated no_double_completion" in result.stdout
    assert "seed: 1" in result.stdout
    replay = f"paysim run {DUPLICATES} --seed 1 --engine mutant:no-transition-guard"
    assert f"replay: {replay}" in result.stdout
    assert_run_folder(out)


def test_thresholds_missed_while_invariants_held_exits_3(tmp_path: Path) -> None:
    result = paysim("run", SLO_MISS, "--seed", "2", "--out", tmp_path / "run")
    assert result.exit_code == 3, result.output
    assert "threshold missed: purchase:create: mean wait" in result.stdout


def test_a_users_engine_is_loaded_by_module_and_factory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(DATA / "engines"))
    result = paysim("run", DUPLICATES, "--engine", "good_engine:factory", "--out", tmp_path / "r")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["engine"] == (
        "good_engine:factory"
    )


# ---- bad input: exit 2, one line on stderr naming the culprit, nothing written


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["run", DATA / "scenarios" / "missing.toml"], "missing.toml: no such scenario file"),
        (["run", UNKNOWN_KEY], "unknown_key.toml: workload[0].cuont: unknown key"),
        (["run", DUPLICATES, "--engine", "nope"], "--engine: unknown engine 'nope'"),
        (["run", DUPLICATES, "--engine", "no_such_pkg.engine:factory"], "cannot import module"),
        (["run", DUPLICATES, "--engine", "not_an_engine:factory"], "not an Engine"),
        (["run", DUPLICATES, "--engine", "not_an_engine:not_callable"], "no callable"),
        (["run", DUPLICATES, "--seed", "-1"], "'--seed'"),
        (["load", "--locks", "etcd"], "'--locks'"),
        (["load", "--locks", "redis", "--redis-url", "redis://127.0.0.1:1/0"], "--redis-url"),
        (["suite", DATA / "scenarios" / "bad"], "unknown_key.toml: workload[0].cuont"),
        (["suite", DATA / "engines"], "no *.toml scenario files"),
        (["explore", DUPLICATES], "'--seeds'"),
        (["mutants", "--suite", DATA / "nowhere"], "not a folder of scenario files"),
        (["check", DATA], "summary.json: missing"),
        (["report", DATA / "nowhere"], "not a run folder"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(
    args: list[str | Path], named: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(DATA / "engines"))
    out = tmp_path / "out"
    extra = ["--out", out] if args[0] in ("run", "suite", "explore", "load") else []
    result = paysim(*args, *extra)
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert named in lines[0]
    assert result.stdout == ""
    assert not out.exists()


def test_help_explains_every_option_and_its_default() -> None:
    result = paysim("suite", "--help")
    assert result.exit_code == 0
    for option in ("--seeds", "--engine", "--junit", "--out", "--workers", "--json"):
        assert option in result.stdout
    assert "default: reference" in result.stdout


# ---- machine-readable output


def test_json_output_is_the_summary_alone_on_stdout(tmp_path: Path) -> None:
    result = paysim("run", DUPLICATES, "--seed", "2", "--out", tmp_path / "r", "--json")
    summary = json.loads(result.stdout)
    assert summary["seed"] == 2 and summary["verdict"] == "pass"
    for key in ("scenario", "engine", "violations", "counts", "lock_wait_ms", "history_sha256"):
        assert key in summary
    assert "PASS" in result.stderr


# ---- stored runs


def test_check_re_judges_a_stored_run_to_the_same_verdict(
    failing_run: tuple[Result, Path],
) -> None:
    _, out = failing_run
    stored = json.loads((out / "summary.json").read_text())
    result = paysim("check", out, "--json")
    assert result.exit_code == 1
    rejudged = json.loads(result.stdout)
    assert rejudged["verdict"] == stored["verdict"] == "fail"
    assert rejudged["violations"] == stored["violations"]
    assert "note:" not in result.stderr


def test_report_rebuilds_the_page_and_the_charts(tmp_path: Path) -> None:
    run_dir = tmp_path / "r"
    assert paysim("run", DUPLICATES, "--out", run_dir).exit_code == 0
    (run_dir / "report.html").unlink()
    shutil.rmtree(run_dir / "charts")
    result = paysim("report", run_dir)
    assert result.exit_code == 0, result.output
    assert_run_folder(run_dir)
    assert "duplicates" in (run_dir / "report.html").read_text()


# ---- suites, JUnit and the index page


def test_suite_writes_junit_an_index_and_exits_with_the_worst_code(tmp_path: Path) -> None:
    junit = tmp_path / "junit.xml"
    out = tmp_path / "suite"
    result = paysim("suite", SUITE, "--junit", junit, "--out", out, "--workers", "1", "--json")
    assert result.exit_code == 3, result.output  # slo_miss misses its threshold, nothing violated
    summaries = json.loads(result.stdout)
    assert len(summaries) == 4  # 2 scenarios × their own 2 seeds
    root = ET.parse(junit).getroot()
    cases = root.findall(".//testcase")
    assert len(cases) == 4
    assert root.get("tests") == "4" and root.get("failures") == "2"
    assert {c.get("classname") for c in cases} == {"duplicates", "slo-miss"}
    assert {c.get("name") for c in cases} == {"reference seed 1", "reference seed 2"}
    assert {f.get("type") for f in root.iter("failure")} == {"threshold"}
    index = (out / "index.html").read_text()
    for summary in summaries:
        run_dir = Path(summary["run_dir"])
        # charts for the runs that did not pass (thresholds missed), not for those that did
        assert_run_folder(run_dir, charts=summary["scenario"] == "slo-miss")
        assert run_dir.relative_to(out).as_posix() + "/report.html" in index


@pytest.mark.parametrize("charts", ["all", "none"])
def test_suite_charts_every_run_or_none_when_asked(tmp_path: Path, charts: str) -> None:
    out = tmp_path / "suite"
    args = ("suite", SUITE, "--seeds", "1", "--out", out, "--workers", "1", "--json")
    result = paysim(*args, "--charts", charts)
    assert result.exit_code == 3, result.output
    summaries = json.loads(result.stdout)
    assert {s["scenario"] for s in summaries} == {"duplicates", "slo-miss"}
    for summary in summaries:
        run_dir = Path(summary["run_dir"])
        if charts == "all":
            assert_run_folder(run_dir)
        else:
            assert not (run_dir / "charts").exists()
            page = (run_dir / "report.html").read_text()
            assert "data:image/png" not in page and "<code>--charts none</code>" in page
            assert "this run passed" not in page
    passing = next(Path(s["run_dir"]) for s in summaries if s["scenario"] == "duplicates")
    assert paysim("report", passing).exit_code == 0  # draws a run's charts later
    assert_run_folder(passing)


def test_junit_carries_each_violated_invariant_and_the_replay_command(tmp_path: Path) -> None:
    junit = tmp_path / "junit.xml"
    result = paysim(
        "suite", SUITE, "--seeds", "1", "--engine", "mutant:no-transition-guard",
        "--junit", junit, "--out", tmp_path / "suite", "--workers", "1",
    )  # fmt: skip
    assert result.exit_code == 1
    root = ET.parse(junit).getroot()
    assert root.get("tests") == "2" and root.get("failures") == "2"
    failures = list(root.iter("failure"))
    assert {f.get("type") for f in failures} == {"invariant"}
    text = failures[0].text or ""
    assert "no_double_completion" in text and "fulfilled" in text
    assert "replay: paysim run" in text and "--engine mutant:no-transition-guard" in text


# ---- exploration, mutants, load, engines


def test_explore_sweeps_seeds_in_worker_processes_and_lists_the_failing_ones(
    tmp_path: Path,
) -> None:
    result = paysim(
        "explore", DUPLICATES, "--seeds", "3", "--workers", "2",
        "--engine", "mutant:no-transition-guard", "--out", tmp_path / "x", "--json",
    )  # fmt: skip
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["failing_seeds"] == [1, 2, 3]
    assert [s["seed"] for s in data["summaries"]] == [1, 2, 3]
    assert "seed 1" in result.stderr and "no_double_completion" in result.stderr
    assert "replay: paysim run" in result.stderr


def test_explore_shrink_writes_a_replayable_minimal_scenario(tmp_path: Path) -> None:
    out = tmp_path / "x"
    result = paysim(
        "explore", DUPLICATES, "--seeds", "1", "--workers", "1", "--shrink",
        "--max-examples", "30", "--engine", "mutant:no-transition-guard", "--out", out, "--json",
    )  # fmt: skip
    assert result.exit_code == 1
    shrunk = json.loads(result.stdout)["shrunk"]
    assert Path(shrunk["path"]).read_text() == shrunk["scenario_toml"]
    replay = paysim("run", shrunk["path"], "--seed", str(shrunk["seed"]), "--engine",
                    "mutant:no-transition-guard", "--out", tmp_path / "replay")  # fmt: skip
    assert replay.exit_code == 1
    assert "violated no_double_completion" in replay.stdout


def test_mutants_reports_caught_by_which_invariant_after_how_many_seeds(tmp_path: Path) -> None:
    result = paysim("mutants", "--suite", SUITE, "--seeds", "1", "--workers", "1", "--json")
    data = json.loads(result.stdout)
    assert data["reference"] == {"runs": 2, "passed": 2, "failing": []}
    rows = {row["engine"]: row for row in data["mutants"]}
    assert set(rows) == {f"mutant:{name}" for name in MUTANTS}
    guard = rows["mutant:no-transition-guard"]
    assert guard["caught"] and guard["seeds_to_detection"] == 1
    assert "no_double_completion" in guard["invariants"] and guard["as_expected"]
    # a two-scenario suite cannot catch every mutant: survivors fail the command
    assert result.exit_code == (0 if all(r["caught"] for r in rows.values()) else 1)


def test_load_builds_a_scenario_from_options_and_reports_lock_waits(tmp_path: Path) -> None:
    out = tmp_path / "load"
    result = paysim(
        "load", "--purchases", "12", "--concurrency", "4", "--instances", "2", "--out", out,
        "--json",
    )  # fmt: skip
    assert result.exit_code in (0, 3), result.output
    summary = json.loads(result.stdout)
    assert summary["counts"]["operations"]
    assert "purchase:create" in summary["lock_wait_ms"]
    assert_run_folder(out)
    assert "instances = 2" in (out / "scenario.toml").read_text()


def test_engines_lists_reference_seed_and_every_mutant() -> None:
    result = paysim("engines")
    assert result.exit_code == 0
    names = {line.split()[0] for line in result.stdout.splitlines()}
    assert {"reference", "seed"} | {f"mutant:{name}" for name in MUTANTS} <= names
