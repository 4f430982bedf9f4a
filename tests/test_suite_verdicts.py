"""The CI suite's contract: the reference engine passes every run, and the harness catches every
known-bad engine (each mutant, and the seed's design) with an invariant it is known to violate."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulator.mutants import MUTANTS
from simulator.runner import run_scenario
from simulator.suite import exit_code_of
from tests.suitehelpers import suite_runs

RUNS = suite_runs()


@pytest.mark.parametrize(
    ("path", "scenario", "seed"), RUNS, ids=[f"{p.stem}-{s}" for p, _, s in RUNS]
)
def test_reference_engine_passes_the_ci_suite(
    tmp_path: Path, path: Path, scenario: object, seed: int
) -> None:
    report = run_scenario(scenario, seed, "reference", tmp_path, scenario_path=str(path))  # type: ignore[arg-type]
    summary = report.summary
    assert summary["verdict"] == "pass", (
        summary["violations"],
        summary["vacuous"],
        summary["replay"],
    )
    assert summary["thresholds"]["met"], summary["thresholds"]["misses"]


#: the most runs of the CI suite (in file and seed order) any mutant may take to be caught
MAX_RUNS_TO_DETECTION = len(RUNS)


@pytest.mark.parametrize("name", sorted(MUTANTS))
def test_every_mutant_is_caught_by_the_ci_suite_with_its_invariant(
    tmp_path: Path, name: str
) -> None:
    mutant = MUTANTS[name]
    for n, (_path, scenario, seed) in enumerate(RUNS, start=1):
        summary = run_scenario(scenario, seed, f"mutant:{name}", tmp_path / str(n)).summary
        caught = {v["invariant"] for v in summary["violations"]}
        if caught & set(mutant.violates):
            assert summary["verdict"] == "fail"
            assert n <= MAX_RUNS_TO_DETECTION
            return
    pytest.fail(f"mutant:{name} survived all {len(RUNS)} runs of the CI suite")


def test_the_seed_design_fails_exactly_the_ci_scenarios_that_expect_it() -> None:
    """`expect_fail = ["seed"]` is what the suite index greys out: it must be the truth."""
    failing, expected = set(), set()
    for path, scenario, seed in RUNS:
        if "seed" in scenario.expect_fail:
            expected.add(path.stem)
        if exit_code_of(run_scenario(scenario, seed, "seed").summary) != 0:
            failing.add(path.stem)
    # its documented bugs: leaks, duplicates, pay-after-cancel, unknown outcomes
    assert {"abandoned-checkouts", "double-click", "pay-after-cancel", "stripe-outage"} <= failing
    assert failing == expected
