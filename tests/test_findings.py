"""The seed design's bugs, each found by the harness and kept as a minimal scenario in
scenarios/findings/: the seed engine violates the stated invariant on the stated seed, and the
reference engine passes the very same run."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulator.runner import run_scenario
from simulator.scenario_file import load_scenario
from tests.suitehelpers import FINDINGS

EXPECTED = {
    "duplicate-pending-three-clicks": {"single_pending_per_user", "counter_consistent"},
    "seat-leak-stripe-failure": {"counter_consistent"},
    "seat-leak-abandoned-session": {"counter_consistent"},
    "pay-after-cancel-past-limit": {"no_limit_bypass", "counter_consistent"},
    "double-completion-concurrent-deliveries": {"no_double_completion"},
    "double-completion-rolling-deploy": {"no_double_completion"},
    "limit-bypass-repeated-payment-failed": {"counter_consistent", "no_limit_bypass"},
}


def test_every_finding_file_is_covered() -> None:
    files = {p.stem for p in FINDINGS.glob("*.toml")}
    assert files == set(EXPECTED) | {"lock-stats-count-hold-time"}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_seed_finding_reproduces_and_reference_survives(tmp_path: Path, name: str) -> None:
    path = FINDINGS / f"{name}.toml"
    scenario = load_scenario(path)
    [seed] = scenario.seeds
    seed_run = run_scenario(
        scenario, seed, "seed", tmp_path / "seed", scenario_path=str(path)
    ).summary
    assert "seed" in scenario.expect_fail, "the suite index greys out what a finding expects"
    violated = {v["invariant"] for v in seed_run["violations"]}
    assert EXPECTED[name] <= violated, seed_run["violations"]
    assert all(v["evidence"] for v in seed_run["violations"]), "every violation cites history lines"
    assert seed_run["replay"] == f"paysim run {path} --seed {seed} --engine seed"
    reference = run_scenario(
        scenario, seed, "reference", tmp_path / "ref", scenario_path=str(path)
    ).summary
    assert reference["verdict"] == "pass", reference["violations"]


def test_seed_lock_statistics_count_hold_time_as_wait_time(tmp_path: Path) -> None:
    path = FINDINGS / "lock-stats-count-hold-time.toml"
    scenario = load_scenario(path)
    summary = run_scenario(scenario, scenario.seeds[0], "seed", tmp_path).summary
    [seed_view] = summary["seed_lock_stats"]["instances"]
    honest_total_ms = seed_view["true_total_wait_time_ms"]
    assert honest_total_ms > 0, "the second click really waited"
    # what the seed reports includes every holder's run time on top of the real waits
    assert seed_view["total_wait_time_ms"] > 2 * honest_total_ms
    honest_mean = honest_total_ms / seed_view["total_locks_acquired"]
    assert seed_view["average_wait_time_ms"] > 2 * honest_mean
