"""report.html shows a violation with its evidence lines and the replay command; index links runs."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from html import escape
from pathlib import Path
from typing import Any

import pytest

from simulator.demo import DEMO
from simulator.report_html import INVARIANTS, write_report
from simulator.run import simulate
from simulator.scenario_file import scenario_to_toml
from simulator.suite import Case, Job, run_job
from simulator.suite_index import write_index

REPLAY = "paysim run scenarios/ci/demo.toml --seed 1 --engine seed"


@pytest.fixture(scope="module")
def seed_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("suite") / "seed"
    simulate(DEMO, 1, "seed", run_dir)
    return run_dir


def _history(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (run_dir / "history.jsonl").read_text().splitlines()]


def _summary(run_dir: Path, verdict: str = "fail") -> dict[str, Any]:
    """A summary shaped like the checker's, citing real history lines of the seed's leak."""
    history = _history(run_dir)
    cancel = next(e["seq"] for e in history if e["type"] == "op.invoke")
    fulfil = [e["seq"] for e in history if e["type"] == "fulfilment"]
    violations = [
        {
            "invariant": "counter_consistent",
            "detail": "prog_1: class_rep_count 2 but 3 seats held at quiescence",
            "purchase_id": "pur_i0g1x000003",
            "session_id": "cs_sim_000002",
            "at": 1890.728609,
            "evidence": [cancel, cancel + 1, *fulfil],
        }
    ]
    invariants = {name: "held" for name in INVARIANTS}
    invariants["counter_consistent"] = "violated" if verdict == "fail" else "held"
    return {
        "scenario": DEMO.name,
        "seed": 1,
        "engine": "seed",
        "verdict": verdict,
        "violations": violations if verdict == "fail" else [],
        "invariants": invariants,
        "vacuous": [],
        "counts": {"operations": {"ok": 4, "fail": 16, "info": 0}, "sessions": 3},
        "lock_wait_ms": {
            "purchase:create": {
                "count": 19,
                "p50": 0.0,
                "p95": 0.0,
                "p99": 0.0,
                "max": 0.0,
                "timeouts": 0,
            },
            "webhook:session": {
                "count": 5,
                "p50": 0.0,
                "p95": 150.0,
                "p99": 150.0,
                "max": 150.0,
                "timeouts": 0,
            },
        },
        "thresholds": {
            "met": False,
            "misses": ["webhook:session: p99 wait 150.0ms > 100ms"],
            "limits": {"mean_wait_ms": 50.0, "p99_wait_ms": 100.0, "timeout_ratio": 0.001},
        },
        "history_sha256": "0" * 64,
        "replay": REPLAY,
        "quiescent": True,
    }


def test_report_shows_violation_evidence_and_replay(seed_run: Path) -> None:
    summary = _summary(seed_run)
    page = write_report(seed_run, summary, scenario_to_toml(DEMO)).read_text()
    assert '<div class="banner fail">FAIL' in page
    assert escape(REPLAY) in page
    violation = summary["violations"][0]
    assert escape(violation["detail"]) in page
    assert "pur_i0g1x000003" in page and "cs_sim_000002" in page
    assert "at t = 1,890.729 s" in page
    lines = (seed_run / "history.jsonl").read_text().splitlines()
    for seq in violation["evidence"]:
        assert escape(lines[seq]) in page, f"evidence line {seq} missing"
    # the SLO miss is marked on the measured cell, and listed
    assert '<td class="num over" title="limit 100">150</td>' in page
    assert escape("webhook:session: p99 wait 150.0ms > 100ms") in page
    assert escape('kind = "webhook_duplicates"') in page


def test_report_is_self_contained(seed_run: Path) -> None:
    page = write_report(seed_run, _summary(seed_run), None).read_text()
    assert page.count('src="data:image/png;base64,') == 5
    assert not re.search(r'(src|href)="(https?:)?//', page)
    assert "<script" not in page and "<link" not in page


def test_every_invariant_is_listed_with_its_state(seed_run: Path) -> None:
    page = write_report(seed_run, _summary(seed_run), None).read_text()
    for name in INVARIANTS:
        assert name in page
    assert '<a href="#counter_consistent">counter_consistent</a>' in page
    assert page.count('<span class="badge violated">') == 1


def test_report_without_history_still_renders(tmp_path: Path, seed_run: Path) -> None:
    summary = _summary(seed_run)
    summary["vacuous"] = ["the run never showed lock_wait"]
    page = write_report(tmp_path, summary, None).read_text()
    assert "not found in history.jsonl" in page
    assert "The run may be vacuous" in page


def test_index_links_each_run_with_its_verdict(tmp_path: Path, seed_run: Path) -> None:
    out = seed_run.parent
    failing = {**_summary(seed_run), "run_dir": str(seed_run)}
    passing = {**_summary(seed_run, "pass"), "engine": "reference", "run_dir": out / "reference"}
    passing["thresholds"] = {"met": True}
    index = write_index(out, [failing, passing]).read_text()
    assert 'href="seed/report.html">seed 1</a>' in index
    assert 'href="reference/report.html">seed 1</a>' in index
    assert '<div class="banner fail">FAIL: a scenario failed that was expected to pass' in index
    assert '<td class="fail"><span class="badge fail">fail</span> 1/1 failed' in index
    assert '<td class="pass"><span class="badge pass">pass</span> 1 passed' in index
    assert "counter_consistent" in index


def _matrix_runs(seed_run: Path, seed_fails: bool) -> list[dict[str, Any]]:
    """Two scenarios × two engines; the seed is expected to fail scenario `a` only."""
    runs = []
    for scenario in ("a", "b"):
        for engine, seeds in (("reference", (1, 2)), ("seed", (1, 2))):
            for s in seeds:
                fails = engine == "seed" and scenario == "a" and seed_fails and s == 2
                run = _summary(seed_run, "fail" if fails else "pass")
                run.update(scenario=scenario, engine=engine, seed=s)
                run.update(run_dir=str(seed_run), expected_fail=engine == "seed" and scenario == "a")
                run["thresholds"] = {"met": True}
                runs.append(run)
    return runs


def test_index_is_a_matrix_where_expected_failures_are_neutral(
    tmp_path: Path, seed_run: Path
) -> None:
    page = write_index(tmp_path, _matrix_runs(seed_run, seed_fails=True)).read_text()
    assert page.count("<tr><th>") == 1 + 2  # the header, then one row per scenario
    assert "<th>reference</th><th>seed</th>" in page  # one column per engine
    assert '<div class="banner pass">PASS: every expectation held' in page
    assert '<td class="expected"><span class="badge expected">expected</span> 1/2 failed' in page
    assert page.count('<td class="pass">') == 3
    assert '<td class="fail">' not in page


def test_index_banner_says_when_an_expected_failure_did_not_happen(
    tmp_path: Path, seed_run: Path
) -> None:
    page = write_index(tmp_path, _matrix_runs(seed_run, seed_fails=False)).read_text()
    assert '<div class="banner unknown">EXPECTATIONS NOT MET' in page
    assert '<td class="surprise">' in page


def test_suite_results_carry_the_scenarios_expectation(tmp_path: Path) -> None:
    scenario = replace(DEMO, expect_fail=("seed",))
    case = Case(scenario, "demo.toml", 1, "demo")
    assert run_job(Job(case, "seed", None)).expected_fail
    assert not run_job(Job(case, "reference", None)).expected_fail


def test_index_cell_says_why_a_run_without_violations_failed(
    tmp_path: Path, seed_run: Path
) -> None:
    slo = {**_summary(seed_run, "pass"), "run_dir": str(seed_run)}  # thresholds missed
    page = write_index(tmp_path, [slo]).read_text()
    assert "1/1 failed<br><small>lock-wait SLO missed</small>" in page
