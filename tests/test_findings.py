"""The seed's bugs, each kept as a minimal scenario in scenarios/findings/, judged through the CLI
as a user runs them: `paysim suite scenarios/findings --engine seed` fails every finding with the
invariants its description names, and `--engine reference` exits 0 (invariants and lock-wait
thresholds alike) on the very same runs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from simulator.cli import main
from simulator.scenario_file import load_scenario
from tests.suitehelpers import FINDINGS

#: finding -> the invariants the seed violates on its seed (exactly these)
EXPECTED = {
    "double-completion-concurrent-deliveries": {"no_double_completion"},
    "double-completion-rolling-deploy": {"no_double_completion"},
    "three-clicks-waiters-run-together": {
        "counter_consistent",
        "no_orphan_session",
        "no_stuck_purchase",
    },
    "late-payment-failed-loses-payment": {"no_lost_payment", "counter_consistent"},
    "order-number-collision": {"counter_consistent", "no_orphan_session"},
    "pay-after-cancel-lost-payment": {"no_lost_payment", "no_orphan_session"},
    "pending-page-deletes-without-seat": {"counter_consistent", "no_orphan_session"},
    "retrieve-error-second-purchase": {
        "single_pending_per_user",
        "counter_consistent",
        "no_stuck_purchase",
    },
    "seat-leak-abandoned-session": {"counter_consistent", "no_stuck_purchase"},
    "seat-leak-stripe-failure": {"counter_consistent"},
}
#: where a finding's description cites the upstream code: `file.ts:L<from>[-<to>]`
CITATION = re.compile(r"\.ts:\s*L\d+(-\d+)?|L\d+-\d+")

# a finding cites the public upstream project, never the maintainers' private notes
FILES_USERS_LACK = ("../" + "shared", "SEED_" + "FACTS")


def _suite(engine: str, out: Path) -> tuple[int, dict[str, dict[str, object]]]:
    result = CliRunner().invoke(
        main,
        ["suite", str(FINDINGS), "--engine", engine, "--out", str(out)],
        catch_exceptions=False,
    )
    summaries = {
        json.loads(p.read_text())["scenario"]: json.loads(p.read_text())
        for p in out.rglob("summary.json")
    }
    return result.exit_code, summaries


def test_every_finding_file_is_covered_and_cites_the_upstream_code() -> None:
    files = {p.stem for p in FINDINGS.glob("*.toml")}
    assert files == set(EXPECTED)
    for name, invariants in EXPECTED.items():
        scenario = load_scenario(FINDINGS / f"{name}.toml")
        assert scenario.expect_fail == ("seed",), "the suite index greys out what a finding expects"
        description = scenario.description
        assert CITATION.search(description), f"{name} cites no upstream line"
        assert not any(ref in description for ref in FILES_USERS_LACK)
        for invariant in invariants:
            assert invariant in description, f"{name} does not name {invariant}"


@pytest.fixture(scope="module")
def seed_suite(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, dict[str, dict]]:
    return _suite("seed", tmp_path_factory.mktemp("seed"))


@pytest.fixture(scope="module")
def reference_suite(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, dict[str, dict]]:
    return _suite("reference", tmp_path_factory.mktemp("reference"))


def test_the_seed_fails_every_finding_with_the_invariants_it_names(
    seed_suite: tuple[int, dict[str, dict]],
) -> None:
    exit_code, summaries = seed_suite
    assert exit_code == 1
    assert set(summaries) == set(EXPECTED)
    for name, summary in summaries.items():
        violated = {v["invariant"] for v in summary["violations"]}  # type: ignore[union-attr]
        assert violated == EXPECTED[name], (name, summary["violations"])
        assert summary["verdict"] == "fail"
        assert all(v["evidence"] for v in summary["violations"]), "violations cite history lines"  # type: ignore[union-attr]
        [seed] = load_scenario(FINDINGS / f"{name}.toml").seeds
        assert summary["replay"] == f"paysim run {FINDINGS / name}.toml --seed {seed} --engine seed"


def test_the_reference_passes_every_finding_thresholds_included(
    reference_suite: tuple[int, dict[str, dict]],
) -> None:
    exit_code, summaries = reference_suite
    assert set(summaries) == set(EXPECTED)
    for name, summary in summaries.items():
        assert summary["verdict"] == "pass", (name, summary["violations"])
        assert not summary.get("vacuous"), (name, summary.get("vacuous"))
        assert summary["thresholds"]["met"], (name, summary["thresholds"]["misses"])  # type: ignore[index]
    assert exit_code == 0
