"""Mutation detection: how far into a suite a known-bad engine gets before an invariant breaks.

A mutant is killed by the first run that catches it, as a mutation tester kills a mutant at its
first failing test. Seeds run in rounds (round n = the n-th seed of every scenario); within a
round the runs go in suite order with the wall-clock (Redis-locked) ones last, since each of
those takes seconds of real time. Which run kills a mutant depends on that order alone, never on
which worker answered first, so one process, many, or a cluster settle the same Detections; the
runs queued behind a kill are cancelled, and a round's wall-clock runs are handed out only once
its simulated runs caught nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass
from typing import Any

from simulator.suite import Case, CaseResult, Job, caught_by
from simulator.sweep import is_wall_clock


@dataclass
class Detection:
    """How one engine fared against a suite: the run that killed it, if one did."""

    engine: str
    caught: bool
    invariants: list[str]  # violated in the run that caught it
    seeds_to_detection: int | None  # that run's round (round n = n-th seed of each scenario)
    runs: int  # runs in order up to and including it: what running them one by one takes
    first: dict[str, Any] | None  # summary of the catching run (its replay command)


@dataclass(frozen=True)
class Stage:
    """Runs handed out together: a round's simulated runs, or its wall-clock runs."""

    round: int
    cases: list[Case]


def by_round(cases: Sequence[Case]) -> list[list[Case]]:
    """Round n holds the n-th seed of every scenario: how `mutants` counts seeds-to-detection."""
    rounds: list[list[Case]] = []
    position: dict[str, int] = {}
    for case in cases:
        n = position.get(case.path, 0)
        position[case.path] = n + 1
        if n == len(rounds):
            rounds.append([])
        rounds[n].append(case)
    return rounds


def stages(rounds: Sequence[Sequence[Case]]) -> list[Stage]:
    """The order a mutant meets the runs in: each round's simulated runs, then its wall-clock."""
    out: list[Stage] = []
    for n, cases in enumerate(rounds, start=1):
        simulated = [c for c in cases if not is_wall_clock(c.scenario)]
        wall_clock = [c for c in cases if is_wall_clock(c.scenario)]
        out += [Stage(n, part) for part in (simulated, wall_clock) if part]
    return out


def judged(
    engine: str, stage: Stage, before: int, results: Sequence[CaseResult | None]
) -> Detection | None | bool:
    """The Detection if the stage's first catching run is known (every run before it is in);
    False if the stage caught nothing; None while that is not yet decided."""
    for index, result in enumerate(results):
        if result is None:
            return None
        names = caught_by(result.summary)
        if names:
            return Detection(engine, True, names, stage.round, before + index + 1, result.summary)
    return False


def detect(
    engines: Sequence[str],
    rounds: Sequence[Sequence[Case]],
    pool: Any,
    on_result: Callable[[CaseResult], None] | None = None,
    *,
    also: Sequence[Job] = (),
    on_found: Callable[[Detection], None] | None = None,
) -> tuple[list[Detection], list[CaseResult]]:
    """Run each engine stage by stage until a run catches it; all engines at once.

    The pool never idles at a stage's end, since other engines' runs wait behind it. `also`
    (the reference runs) go out first, in the same pool; their results come back in job order.
    `on_result` hears of every run that counted or finished before its engine was settled;
    `on_found` of each engine's Detection as soon as it is settled. A pool that runs only
    batches (`run`, as the cluster's) gets one engine's stage at a time.
    """
    plan = stages(rounds)
    if not hasattr(pool, "submit"):
        return _detect_in_batches(engines, plan, pool, on_result, also, on_found)
    pending: dict[Future[CaseResult], tuple[str, int]] = {}  # insertion order: submission
    found: dict[str, Detection] = {}
    results: dict[str, list[CaseResult | None]] = {}
    futures: dict[str, list[Future[CaseResult]]] = {}
    at: dict[str, int] = {}  # the stage each engine is in
    before = dict.fromkeys(engines, 0)  # runs in the stages it passed
    extra = [pool.submit(job) for job in also]
    pending.update({f: ("", n) for n, f in enumerate(extra)})

    def settle(detection: Detection) -> None:
        found[detection.engine] = detection
        for future in futures.pop(detection.engine, []):
            if not future.done():
                future.cancel()  # a running one finishes unheard
            pending.pop(future, None)
        if on_found:
            on_found(detection)

    def hand_out(engine: str, s: int) -> None:
        at[engine], cases = s, plan[s].cases
        results[engine] = [None] * len(cases)
        futures[engine] = []
        for index, case in enumerate(cases):
            future = pool.submit(Job(case, engine, None))
            futures[engine].append(future)
            pending[future] = (engine, index)
            if future.done() and not future.exception() and caught_by(future.result().summary):
                break  # a pool that runs at submit: the runs after a catch are not needed

    def advance(engine: str) -> None:
        s = at[engine]
        verdict = judged(engine, plan[s], before[engine], results[engine])
        if isinstance(verdict, Detection):
            settle(verdict)
        elif verdict is False:
            before[engine] += len(plan[s].cases)
            if s + 1 < len(plan):
                hand_out(engine, s + 1)
            else:
                settle(Detection(engine, False, [], None, before[engine], None))

    for engine in engines:
        if plan:
            hand_out(engine, 0)
        else:
            settle(Detection(engine, False, [], None, 0, None))
    while pending:
        done, _ = wait(pending, return_when=FIRST_COMPLETED)
        for future in [f for f in pending if f in done]:  # in submission order
            if future not in pending:
                continue  # its engine was settled by a result handled just before
            engine, index = pending.pop(future)
            result = future.result()
            if on_result:
                on_result(result)
            if engine:
                results[engine][index] = result
                advance(engine)
    return [found[e] for e in engines], [f.result() for f in extra]


def _detect_in_batches(
    engines: Sequence[str],
    plan: Sequence[Stage],
    pool: Any,
    on_result: Callable[[CaseResult], None] | None,
    also: Sequence[Job],
    on_found: Callable[[Detection], None] | None,
) -> tuple[list[Detection], list[CaseResult]]:
    """`detect` on a pool that only runs batches: the reference, then engine by engine."""
    reference = pool.run(list(also), on_result) if also else []
    found = []
    for engine in engines:
        before, detection = 0, None
        for stage in plan:
            results = pool.run([Job(c, engine, None) for c in stage.cases], on_result)
            verdict = judged(engine, stage, before, results)
            if isinstance(verdict, Detection):
                detection = verdict
                break
            before += len(stage.cases)
        detection = detection or Detection(engine, False, [], None, before, None)
        if on_found:
            on_found(detection)
        found.append(detection)
    return found, reference
