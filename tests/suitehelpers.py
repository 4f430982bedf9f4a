"""The CI suite as (file, scenario, seed) runs, shared by the detection and suite tests."""

from __future__ import annotations

from pathlib import Path

from simulator.scenario import Scenario
from simulator.scenario_file import load_scenario

ROOT = Path(__file__).resolve().parent.parent
CI_SUITE = ROOT / "scenarios" / "ci"
FINDINGS = ROOT / "scenarios" / "findings"


def suite_runs(
    folder: Path = CI_SUITE, *, virtual_only: bool = True
) -> list[tuple[Path, Scenario, int]]:
    """Every (scenario file, scenario, seed) of a suite, in file then seed order.

    Redis-backed scenarios run in wall-clock time against a server; `virtual_only` leaves them
    to their own tests.
    """
    runs = []
    for path in sorted(folder.glob("*.toml")):
        scenario = load_scenario(path)
        if virtual_only and scenario.topology.locks == "redis":
            continue
        runs.extend((path, scenario, seed) for seed in scenario.seeds)
    return runs
