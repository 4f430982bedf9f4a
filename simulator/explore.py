"""Exploration: Hypothesis search with shrinking (seed sweeps are in `simulator.sweep`).

A search lets Hypothesis generate whole scenarios (workload, customers, faults,
topology) plus a seed, keeps the ones the engine fails, and shrinks the failure to the smallest
scenario that still fails — printed as a scenario file and a seed, ready to replay.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, Verbosity, find, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from hypothesis.errors import NoSuchExample

from reference_impl.ports import EngineConfig
from simulator.nemesis import FAULT_KINDS, REDIS_KINDS
from simulator.runner import run_scenario
from simulator.scenario import (
    AdversarySettings,
    CustomerMix,
    Durations,
    FaultSpec,
    ProgramSpec,
    Scenario,
    Topology,
    WorkloadPart,
)

# ---------------------------------------------------------------- Hypothesis search

ACTION_WEIGHTS = st.integers(min_value=0, max_value=3).map(float)


@st.composite
def fault_specs(draw: st.DrawFn) -> FaultSpec:
    # Redis faults need a Redis topology (wall-clock runs): not part of virtual-time exploration
    kind = draw(st.sampled_from(sorted(FAULT_KINDS - REDIS_KINDS)))
    return FaultSpec(
        kind=kind,
        start=draw(st.sampled_from([0.0, 5.0])),
        end=draw(st.sampled_from([30.0, 120.0])),
        probability=draw(st.sampled_from([0.1, 0.5, 1.0])),
        value_s=draw(st.sampled_from([1.0, 12.0, 40.0])),
        rate=draw(st.sampled_from([1.0, 5.0])),
        target=draw(st.sampled_from(["i0", "any"])),
    ).without_unread()  # as a scenario file must have it: only what its kind reads


@st.composite
def scenarios(draw: st.DrawFn, name: str = "explored") -> Scenario:
    """Small scenarios: few users, few seats, any mix of faults. Shrinks toward less of each."""
    limit = draw(st.integers(min_value=1, max_value=3))
    parts = []
    herd = draw(st.integers(min_value=0, max_value=6))
    if herd:
        parts.append(WorkloadPart(kind="herd", count=herd, at=1.0))
    clickers = draw(st.integers(min_value=0, max_value=3))
    if clickers:
        clicks = draw(st.integers(min_value=2, max_value=4))
        parts.append(WorkloadPart(kind="double_click", count=clickers, clicks=clicks, at=2.0))
    steady = draw(st.integers(min_value=0, max_value=4))
    if steady:
        parts.append(
            WorkloadPart(kind="steady", count=steady, at=1.0, rate_per_s=0.2, duration_s=60.0)
        )
    if not parts:
        parts.append(WorkloadPart(kind="herd", count=1, at=1.0))
    mix = CustomerMix(
        pay=1.0 + draw(ACTION_WEIGHTS),
        decline_then_pay=draw(ACTION_WEIGHTS),
        decline=draw(ACTION_WEIGHTS),
        async_success=draw(ACTION_WEIGHTS),
        async_failure=draw(ACTION_WEIGHTS),
        abandon=draw(ACTION_WEIGHTS),
        cancel=draw(ACTION_WEIGHTS),
        pay_after_cancel=draw(ACTION_WEIGHTS),
        think_time_s=(1.0, 30.0),
    )
    faults = tuple(draw(st.lists(fault_specs(), max_size=3, unique_by=lambda f: f.kind)))
    instances = draw(st.integers(min_value=1, max_value=2))
    return Scenario(
        name=name,
        programs=(ProgramSpec(class_rep_limit=limit),),
        workload=tuple(parts),
        customers=mix,
        faults=faults,
        topology=Topology(instances=instances),
        durations=Durations(workload_s=150.0),
        engine_config=EngineConfig(session_ttl=1800.0, stripe_timeout=5.0, reconcile_grace=300.0),
    )


def sample_scenarios(count: int, seed: int) -> list[tuple[Scenario, int]]:
    """Up to `count` distinct (scenario, run seed) pairs drawn from `scenarios()`, the same ones
    for the same `seed`: Hypothesis's own generation, seeded, with no database and no shrinking
    (the guided search's fresh inputs)."""
    drawn: list[tuple[Scenario, int]] = []

    @hypothesis_seed(seed)
    @settings(
        max_examples=count,
        database=None,
        deadline=None,
        derandomize=False,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.generate],
        verbosity=Verbosity.quiet,
    )
    @given(st.tuples(scenarios(name="generated"), st.integers(min_value=0, max_value=2**16)))
    def draw(case: tuple[Scenario, int]) -> None:
        if case not in drawn:
            drawn.append(case)

    draw()
    return drawn[:count]


@dataclass
class Found:
    scenario: Scenario
    seed: int
    summary: dict[str, Any]
    examples: int


def search(
    engine: str,
    *,
    max_examples: int = 200,
    invariant: str | None = None,
    on_example: Callable[[int], None] | None = None,
) -> Found | None:
    """Find a scenario + seed on which `engine` violates an invariant, shrunk to a minimum."""
    seen = {"n": 0}
    last: dict[str, Any] = {}

    def fails(case: tuple[Scenario, int]) -> bool:
        scenario, seed = case
        seen["n"] += 1
        if on_example:
            on_example(seen["n"])
        # vacuity is not a bug in the engine: judge the invariants alone here
        scenario = replace(scenario, expect=())
        with tempfile.TemporaryDirectory(prefix="paysim-explore-") as tmp:
            summary = run_scenario(scenario, seed, engine, Path(tmp)).summary
        statuses = summary["invariants"]
        bad = (
            statuses.get(invariant) == "violated" if invariant else "violated" in statuses.values()
        )
        if bad:
            last[(scenario, seed)] = summary
        return bad

    config = settings(
        max_examples=max_examples,
        database=None,
        deadline=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.generate, Phase.shrink],
        verbosity=Verbosity.quiet,
    )
    strategy = st.tuples(scenarios(), st.integers(min_value=0, max_value=2**16))
    try:
        scenario, seed = find(strategy, fails, settings=config)
    except NoSuchExample:
        return None
    summary = last.get((replace(scenario, expect=()), seed))
    if summary is None:
        with tempfile.TemporaryDirectory() as tmp:
            summary = run_scenario(replace(scenario, expect=()), seed, engine, Path(tmp)).summary
    return Found(scenario, seed, summary, seen["n"])


# ---------------------------------------------------------------- shrinking a known failure


def still_fails(scenario: Scenario, seed: int, engine: str, invariant: str | None) -> bool:
    """Does `engine` still violate `invariant` (any, if None) on this scenario and seed?"""
    with tempfile.TemporaryDirectory(prefix="paysim-shrink-") as tmp:
        summary = run_scenario(replace(scenario, expect=()), seed, engine, Path(tmp)).summary
    broken = {v["invariant"] for v in summary.get("violations") or []}
    return invariant in broken if invariant else bool(broken)


def shrink_known(
    scenario: Scenario,
    seed: int,
    fails: Callable[[Scenario], bool],
    *,
    max_runs: int = 24,
) -> Scenario:
    """A smaller scenario with the same failure: drop each fault the failure does not need (a
    fault that never fired would make the replay vacuous), then the adversary, each preloaded
    purchase and each workload part it does not need, then halve each workload part's count
    while the failure remains. Greedy and bounded: at most `max_runs` runs."""
    runs = 0
    for fault in list(scenario.faults):
        if runs >= max_runs:
            return scenario
        candidate = replace(scenario, faults=tuple(f for f in scenario.faults if f != fault))
        runs += 1
        if fails(candidate):
            scenario = candidate
    smaller: list[Callable[[Scenario], Scenario | None]] = [
        lambda s: replace(s, adversary=AdversarySettings()) if s.adversary.enabled else None
    ]
    smaller += [_without("preload", n) for n in reversed(range(len(scenario.preload)))]
    smaller += [_without("workload", n) for n in reversed(range(len(scenario.workload)))]
    for make in smaller:
        candidate = make(scenario)
        if candidate is None:
            continue
        if runs >= max_runs:
            return scenario
        runs += 1
        if fails(candidate):
            scenario = candidate
    for n in range(len(scenario.workload)):
        while scenario.workload[n].count > 1 and runs < max_runs:
            part = scenario.workload[n]
            parts = list(scenario.workload)
            parts[n] = replace(part, count=part.count // 2)
            candidate = replace(scenario, workload=tuple(parts))
            runs += 1
            if not fails(candidate):
                break
            scenario = candidate
    return scenario


def _without(array: str, n: int) -> Callable[[Scenario], Scenario | None]:
    """Drop item `n` of `array` (counted when the list was made: later drops come first), unless
    it is the last workload part."""

    def make(scenario: Scenario) -> Scenario | None:
        items = getattr(scenario, array)
        if n >= len(items) or (array == "workload" and len(items) == 1):
            return None
        return replace(scenario, **{array: items[:n] + items[n + 1 :]})

    return make
