"""Black-box runs judged and reported like simulated ones: summary.json, charts, report.html.

The run folder has the same files as a simulated run's (plus `mode`, `clock`, `target` and the
faults on / off in summary.json), so `paysim check` and `paysim report` work on it unchanged.
Its scenario.toml is the scenario as played: without the faults the target could not take, so
that no verdict blames the run for a fault that was off.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from simulator.blackbox.driver import Target, blackbox_run, faults_split, played
from simulator.judge import judge_dir
from simulator.runner import build_summary
from simulator.scenario import Scenario
from simulator.scenario_file import scenario_to_toml
from simulator.suite import CaseResult, render


def run_blackbox_case(
    scenario: Scenario,
    seed: int,
    target: Target,
    run_dir: Path,
    *,
    scenario_path: str | None = None,
    report: bool = True,
) -> CaseResult:
    """One black-box run into `run_dir`, judged; charts and report.html when `report`."""
    started = time.perf_counter()
    run_dir.mkdir(parents=True, exist_ok=True)
    on, off = faults_split(scenario, target)
    as_played = played(scenario, target)
    toml = scenario_to_toml(as_played)
    (run_dir / "scenario.toml").write_text(toml, encoding="utf-8")
    result = blackbox_run(scenario, seed, target, run_dir)
    judgement = judge_dir(run_dir, as_played)
    summary: dict[str, Any] = {
        **build_summary(scenario, result, judgement, scenario_path),
        "replay": target.replay(scenario_path or str(run_dir / "scenario.toml"), seed),
        "mode": "blackbox",
        "clock": "wall-clock",
        "target": target.label,
        "faults_on": on,
        "faults_off": off,
    }
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n")
    if report:
        render(run_dir, summary, toml)
    return CaseResult(
        summary,
        run_dir,
        scenario_path or str(run_dir / "scenario.toml"),
        seconds=time.perf_counter() - started,
    )
