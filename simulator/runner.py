"""Run a scenario and judge it: simulate, check every invariant, write `summary.json`.

The one-call entry point the CLI, the suites, the explorer and the tests share.
"""

from __future__ import annotations

import json
import shlex
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reference_impl.ports import EngineFactory
from reference_impl.registry import load_factory
from simulator.engine_coverage import engine_code, measuring
from simulator.engines import EXTRA
from simulator.judge import Judgement, judge_dir
from simulator.run import RunResult, simulate
from simulator.scenario import Scenario
from simulator.tested import tested_summary


@dataclass
class RunReport:
    run: RunResult
    judgement: Judgement
    summary: dict[str, Any]
    out_dir: Path

    @property
    def verdict(self) -> str:
        return self.judgement.verdict

    @property
    def exit_code(self) -> int:
        return self.judgement.exit_code


def run_scenario(
    scenario: Scenario,
    seed: int,
    engine: str | EngineFactory = "reference",
    out_dir: Path | None = None,
    *,
    scenario_path: str | None = None,
    wall_clock: bool = False,
    coverage_dir: Path | None = None,
) -> RunReport:
    """`coverage_dir`: measure the engine's own code during the run, a data file in that folder
    (`simulator.engine_coverage`; folders of many runs combine)."""
    if out_dir is None:
        out_dir = Path(tempfile.mkdtemp(prefix="paysim-run-"))
    factory = load_factory(engine, EXTRA) if isinstance(engine, str) else engine
    code = engine_code(factory) if coverage_dir is not None else None
    with measuring(coverage_dir, code):
        result = simulate(
            scenario, seed, engine, out_dir, wall_clock=wall_clock, extra_engines=EXTRA
        )
    judgement = judge_dir(out_dir, scenario)
    summary = build_summary(scenario, result, judgement, scenario_path)
    summary["tested"] = tested_summary(scenario, result.success_page)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n")
    return RunReport(result, judgement, summary, out_dir)


def replay_command(scenario_path: str | None, seed: int, engine: str) -> str:
    target = scenario_path or "<scenario.toml>"
    return f"paysim run {shlex.quote(target)} --seed {seed} --engine {shlex.quote(engine)}"


def build_summary(
    scenario: Scenario, result: RunResult, judgement: Judgement, scenario_path: str | None
) -> dict[str, Any]:
    return {
        "scenario": scenario.name,
        "seed": result.seed,
        "engine": result.engine,
        "verdict": judgement.verdict,
        "violations": judgement.violations,
        "invariants": judgement.invariants,
        "vacuous": judgement.vacuous,
        "counts": result.counts,
        "lock_wait_ms": judgement.lock_wait_ms,
        "thresholds": judgement.thresholds,
        "history_sha256": result.history_sha256,
        "quiescent": judgement.quiescent,
        "replay": replay_command(scenario_path, result.seed, result.engine),
        "virtual_s": round(result.virtual_s, 3),
        "wall_s": round(result.wall_s, 3),
        "seed_lock_stats": result.seed_lock_stats,
        "engine_errors": result.engine_errors,
        # only when the run's own infrastructure failed: the verdict is then `incomplete`
        **({"infrastructure": judgement.infrastructure} if judgement.infrastructure else {}),
    }
