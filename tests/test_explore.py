"""Exploration: parallel seed sweeps agree with serial ones, and search shrinks failures."""

from __future__ import annotations

import json
from pathlib import Path

from simulator.explore import search
from simulator.runner import run_scenario
from simulator.scenario_file import load_scenario
from simulator.sweep import sweep
from tests.suitehelpers import CI_SUITE


def test_parallel_sweep_gives_the_same_runs_as_a_serial_one(tmp_path: Path) -> None:
    scenario = load_scenario(CI_SUITE / "double-click.toml")
    seeds = list(range(1, 5))
    serial = [s["history_sha256"] for s in sweep(scenario, seeds, "seed")]
    parallel = [
        s["history_sha256"] for s in sweep(scenario, seeds, "seed", workers=2, out_dir=tmp_path)
    ]
    assert serial == parallel
    assert len(set(serial)) == len(seeds), "different seeds explore different interleavings"
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"seed-{s}" for s in seeds]


def test_search_finds_a_mutant_bug_and_shrinks_it_to_a_minimal_scenario() -> None:
    found = search("mutant:no-transition-guard", max_examples=50)
    assert found is not None
    assert "no_double_completion" in {v["invariant"] for v in found.summary["violations"]}
    # shrunk: one buyer, no faults, a single workload part
    assert found.scenario.faults == ()
    assert len(found.scenario.workload) == 1 and found.scenario.workload[0].count == 1


def test_search_shrinks_to_the_fault_that_matters(tmp_path: Path) -> None:
    found = search("mutant:no-compensation", max_examples=150, invariant="counter_consistent")
    assert found is not None
    # the leak needs Stripe to refuse a create: a Stripe fault, or a stall that pushed the
    # session's expires_at under Stripe's 30-minute minimum (explored scenarios ask for 30 min)
    run_scenario(found.scenario, found.seed, "mutant:no-compensation", tmp_path)
    history = (json.loads(line) for line in (tmp_path / "history.jsonl").open())
    refused = [
        e
        for e in history
        if e["type"] == "stripe.request"
        and (e["method"], e["path"]) == ("POST", "/v1/checkout/sessions")
        and (e.get("fault") or e.get("status", 0) >= 400)
    ]
    assert refused, {f.kind for f in found.scenario.faults}
    assert len(found.scenario.faults) <= 2
    assert sum(p.count for p in found.scenario.workload) <= 3


def test_search_finds_nothing_on_the_reference_engine() -> None:
    assert search("reference", max_examples=40) is None


def test_shrink_known_drops_what_the_failure_does_not_need() -> None:
    from dataclasses import replace

    from simulator.explore import shrink_known
    from simulator.scenario import AdversarySettings, PreloadPurchase, Scenario, WorkloadPart

    big = replace(
        load_scenario(CI_SUITE / "pay-after-cancel.toml"),
        workload=(
            WorkloadPart(kind="herd", count=6),
            WorkloadPart(kind="double_click", count=8),
            WorkloadPart(kind="steady", count=4),
        ),
        preload=(PreloadPurchase(user_id="a"), PreloadPurchase(user_id="b")),
        adversary=AdversarySettings(enabled=True),
    )
    tried: list[Scenario] = []

    def fails(candidate: Scenario) -> bool:  # the failure needs a double-click and b's preload
        tried.append(candidate)
        clicks = any(p.kind == "double_click" for p in candidate.workload)
        return clicks and any(p.user_id == "b" for p in candidate.preload)

    small = shrink_known(big, 1, fails, max_runs=40)
    assert [(p.kind, p.count) for p in small.workload] == [("double_click", 1)]
    assert [p.user_id for p in small.preload] == ["b"]
    assert not small.adversary.enabled
    assert len(tried) <= 40
    assert shrink_known(big, 1, fails, max_runs=2) != small  # the budget bounds the runs
