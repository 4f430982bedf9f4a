"""The scenarios the benchmark runs: one fixed shape, scaled by purchase count.

A benchmark is only comparable across commits if its workload is pinned, so these live in code
(not in a scenario file someone may tune) and every figure in bench.json names the scenario.
"""

from __future__ import annotations

from reference_impl.ports import EngineConfig
from simulator.scenario import (
    CustomerMix,
    Durations,
    FaultSpec,
    ProgramSpec,
    Scenario,
    Topology,
    WorkloadPart,
)

#: purchases per virtual second: steady arrivals, so a run's size scales its virtual length
ARRIVAL_RATE_PER_S = 20.0
#: one program per this many purchases: a larger run is more of the same shop, not one ever
#: larger program (`seat_scenario` measures what program size costs)
PURCHASES_PER_PROGRAM = 1_000


def ci_fault_mix(workload_s: float) -> tuple[FaultSpec, ...]:
    """A modest mix of the CI suite's hazards, on for the whole workload phase."""
    return (
        FaultSpec(kind="webhook_duplicates", probability=0.1),
        FaultSpec(kind="stripe_errors", probability=0.02),
        FaultSpec(kind="stripe_latency", probability=0.01, value_s=30.0),
        FaultSpec(kind="email_outage", probability=1.0, start=0.0, end=workload_s / 4),
        FaultSpec(kind="crash", target="any", probability=0.0005),
    )


def _steady(
    program: str, count: int, purchases: int, window_s: float, class_rep: bool
) -> WorkloadPart:
    """`count` of the run's `purchases` buyers of `program`, arriving steadily over the window."""
    return WorkloadPart(
        kind="steady",
        program=program,
        count=count,
        at=1.0,
        rate_per_s=max(ARRIVAL_RATE_PER_S * count / purchases, 0.001),
        duration_s=window_s,
        class_rep=class_rep,
    )


def purchases_scenario(purchases: int, *, faults: bool = True) -> Scenario:
    """`purchases` steady arrivals on two instances, spread over one program per
    PURCHASES_PER_PROGRAM; one buyer in five wants a class-rep seat and each program's seats run
    out about half-way. `faults=False` runs clean."""
    arrivals_s = purchases / ARRIVAL_RATE_PER_S
    workload_s = 1.0 + arrivals_s * 1.5 + 180.0
    window_s = arrivals_s * 1.5 + 60.0
    count = max(1, -(-purchases // PURCHASES_PER_PROGRAM))
    programs = [f"prog_{n + 1}" for n in range(count)]
    parts: list[WorkloadPart] = []
    limit = 1
    for n, program in enumerate(programs):
        buyers = purchases // count + (1 if n < purchases % count else 0)
        reps = buyers // 5
        limit = max(limit, reps // 2)
        for part_count, class_rep in ((buyers - reps, False), (reps, True)):
            if part_count:
                parts.append(_steady(program, part_count, purchases, window_s, class_rep))
    return Scenario(
        name=f"bench-{purchases}{'-ci-faults' if faults else '-no-faults'}",
        description=(
            f"benchmark: {purchases} purchases at {ARRIVAL_RATE_PER_S:g}/s over "
            f"{len(programs)} programs, 1 in 5 class rep"
        ),
        programs=tuple(ProgramSpec(id=p, class_rep_limit=limit) for p in programs),
        workload=tuple(parts),
        customers=CustomerMix(think_time_s=(5.0, 120.0)),
        faults=ci_fault_mix(workload_s) if faults else (),
        topology=Topology(instances=2),
        durations=Durations(workload_s=workload_s),
        engine_config=EngineConfig(session_ttl=1800.0, reconcile_grace=900.0),
    )


#: seats in the seat-scaling runs: one program of this many, or as many programs of SMALL_LIMIT
SEATS = 10_000
SMALL_LIMIT = 100


def seat_scenario(purchases: int, *, limit: int) -> Scenario:
    """`purchases` class-rep buyers over SEATS seats cut into programs of `limit` seats each:
    the same shop, buyers and seats whatever `limit`, so purchases per CPU-second at `limit`
    SEATS against SMALL_LIMIT shows what a seat operation costs as more seats are held. With
    `purchases` near SEATS most seats are held by the end. No faults: the ledger alone varies."""
    count = max(1, SEATS // limit)
    programs = [f"prog_{n + 1}" for n in range(count)]
    arrivals_s = purchases / ARRIVAL_RATE_PER_S
    window_s = arrivals_s * 1.5 + 60.0
    parts: list[WorkloadPart] = []
    for n, program in enumerate(programs):
        buyers = purchases // count + (1 if n < purchases % count else 0)
        if buyers:
            parts.append(_steady(program, buyers, purchases, window_s, class_rep=True))
    return Scenario(
        name=f"bench-seats-{purchases}-limit-{limit}",
        description=(
            f"benchmark: {purchases} class-rep purchases at {ARRIVAL_RATE_PER_S:g}/s over "
            f"{len(programs)} programs of {limit} seats"
        ),
        programs=tuple(ProgramSpec(id=p, class_rep_limit=limit) for p in programs),
        workload=tuple(parts),
        customers=CustomerMix(think_time_s=(5.0, 120.0)),
        topology=Topology(instances=2),
        durations=Durations(workload_s=1.0 + window_s + 180.0),
        engine_config=EngineConfig(session_ttl=1800.0, reconcile_grace=900.0),
    )
