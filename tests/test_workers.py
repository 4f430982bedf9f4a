"""Running many runs: the local pool, and mutation detection with every engine at once.

`detect` hands out all engines' stages together; it must settle each engine exactly as running
that engine's runs alone, one by one in order until one catches it, would (the sequential
version is written out here), and hand out nothing a kill made unneeded.
"""

from __future__ import annotations

import random
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from simulator.detection import Detection, by_round, detect, stages
from simulator.scenario import Scenario, Topology
from simulator.suite import Case, CaseResult, Job, caught_by
from simulator.sweep import LocalPool, is_wall_clock

#: (engine, scenario, seed) -> invariants the run violates; absent: it passes
VIOLATES = {
    ("A", "s2", 2): ["no_double_completion"],
    ("A", "s1", 3): ["counter_consistent"],  # round 3: never reached, A is caught in round 2
    ("C", "s1", 1): ["no_limit_bypass"],
    ("C", "s3", 1): ["counter_consistent", "no_limit_bypass"],  # after C's kill: not needed
    ("D", "s3", 3): ["no_lost_payment"],
    ("E", "r1", 1): ["single_pending_per_user"],  # a wall-clock run: after s1..s3 of round 1
    ("E", "s3", 2): ["no_double_completion"],
    ("F", "r1", 1): ["single_pending_per_user"],
    ("F", "s2", 1): ["no_limit_bypass"],  # a simulated catch: r1 is never handed out
}
ENGINES = ["A", "B", "C", "D", "E", "F"]
#: the wall-clock (Redis-locked) scenario of the suite
REDIS = Scenario(name="r1", topology=Topology(locks="redis"))


def _cases() -> list[Case]:
    return [
        Case(REDIS if name == "r1" else Scenario(name=name), f"{name}.toml", seed, name)
        for name in ("r1", "s1", "s2", "s3")
        for seed in (1, 2, 3)
    ]


def _result(job: Job) -> CaseResult:
    case = job.case
    broken = VIOLATES.get((str(job.engine), case.stem, case.seed), [])
    summary = {
        "engine": job.engine,
        "scenario": case.stem,
        "seed": case.seed,
        "verdict": "fail" if broken else "pass",
        "violations": [{"invariant": name} for name in broken],
    }
    return CaseResult(summary, None, case.path)


class _ShuffledPool:
    """Answers on threads after random delays: results come back in any order."""

    def __init__(self) -> None:
        self.threads = ThreadPoolExecutor(4)
        self.rng = random.Random(7)
        self.submitted: list[Job] = []

    def submit(self, job: Job) -> Future[CaseResult]:
        self.submitted.append(job)
        delay = self.rng.random() / 200

        def answer() -> CaseResult:
            import time

            time.sleep(delay)
            return _result(job)

        return self.threads.submit(answer)


def _one_engine_alone(engine: str, rounds: list[list[Case]]) -> Detection:
    """Each round's simulated runs in suite order, then its wall-clock ones; stop at a catch."""
    runs = 0
    for n, cases in enumerate(rounds, start=1):
        ordered = [c for c in cases if c.stem != "r1"] + [c for c in cases if c.stem == "r1"]
        for case in ordered:
            summary = _result(Job(case, engine, None)).summary
            runs += 1
            if caught_by(summary):
                return Detection(engine, True, caught_by(summary), n, runs, summary)
    return Detection(engine, False, [], None, runs, None)


def test_a_rounds_wall_clock_runs_come_after_its_simulated_ones() -> None:
    plan = stages(by_round(_cases()))
    assert [(s.round, [c.stem for c in s.cases]) for s in plan] == [
        (n, names) for n in (1, 2, 3) for names in (["s1", "s2", "s3"], ["r1"])
    ]


def test_all_engines_at_once_settle_as_each_engine_alone_would() -> None:
    cases = _cases()
    rounds = by_round(cases)
    pool = _ShuffledPool()
    heard: list[str] = []
    seen: list[Any] = []
    found, reference = detect(
        ENGINES,
        rounds,
        pool,  # type: ignore[arg-type]
        seen.append,
        also=[Job(c, "ref", None) for c in cases],
        on_found=lambda d: heard.append(d.engine),
    )
    assert found == [_one_engine_alone(e, rounds) for e in ENGINES]
    assert [(d.caught, d.seeds_to_detection, d.runs) for d in found] == [
        (True, 2, 6),  # round 1 (4 runs), then s1 and s2 of round 2
        (False, None, 12),
        (True, 1, 1),
        (True, 3, 11),
        (True, 1, 4),  # r1 of round 1, after its three simulated runs
        (True, 1, 2),
    ]
    # the first catching run's invariants, not those of a run after it (C's s3)
    assert found[2].invariants == ["no_limit_bypass"]
    assert sorted(heard) == ENGINES
    # the reference runs come back in job order
    assert [(r.summary["scenario"], r.summary["seed"]) for r in reference] == [
        (c.stem, c.seed) for c in cases
    ]
    # no stage past an engine's catch is handed out: F never meets the wall-clock run
    submitted = {(str(j.engine), j.case.stem, j.case.seed) for j in pool.submitted}
    assert ("F", "r1", 1) not in submitted and ("E", "r1", 1) in submitted
    assert not any(j.engine in "ACEF" and j.case.seed == 3 for j in pool.submitted)
    per_engine = {e: sum(1 for j in pool.submitted if j.engine == e) for e in ENGINES}
    assert (per_engine["B"], per_engine["D"]) == (12, 11)  # D: caught before round 3's r1
    assert len(seen) <= len(pool.submitted)


def test_a_pool_that_runs_at_submit_runs_nothing_after_a_kill() -> None:
    cases = _cases()
    rounds = by_round(cases)
    ran: list[Job] = []

    class _HereAndNow:
        def submit(self, job: Job) -> Future[CaseResult]:
            ran.append(job)
            done: Future[CaseResult] = Future()
            done.set_result(_result(job))
            return done

    found, _ = detect(ENGINES, rounds, _HereAndNow())
    assert found == [_one_engine_alone(e, rounds) for e in ENGINES]
    # one by one: exactly the runs a sequential runner makes, each run once
    assert {e: sum(1 for j in ran if j.engine == e) for e in ENGINES} == {
        d.engine: d.runs for d in found
    }


def _double(n: int) -> int:
    return 2 * n


def test_local_pool_runs_here_with_one_worker_and_in_processes_otherwise() -> None:
    with LocalPool(1) as here:
        done = here.submit(_double, 21)
        assert done.done() and done.result() == 42
        failed = here.submit(_double, None)  # type: ignore[arg-type]
        assert isinstance(failed.exception(), TypeError)
    with LocalPool(2, 1) as pool:  # a builtin: the workers need not import this test module
        futures = [pool.submit(abs, -n, wall_clock=n == 2) for n in (1, 2)]
        assert [f.result() for f in futures] == [1, 2]
        assert set(pool._pools) == {True, False}  # wall-clock runs have processes of their own


def test_redis_locked_scenarios_are_the_wall_clock_ones() -> None:
    assert is_wall_clock(Scenario(name="r", topology=Topology(locks="redis")))
    assert not is_wall_clock(Scenario(name="m"))


class _BatchPool:
    """Runs batches only (`run`, as the cluster's pool does): no `submit`."""

    def __init__(self) -> None:
        self.batches: list[list[Job]] = []

    def run(self, jobs: list[Job], on_result: Any = None) -> list[CaseResult]:
        self.batches.append(list(jobs))
        results = [_result(job) for job in jobs]
        for result in results:
            if on_result:
                on_result(result)
        return results


def test_a_batch_only_pool_settles_the_same_detections() -> None:
    cases = _cases()
    rounds = by_round(cases)
    pool = _BatchPool()
    found, reference = detect(ENGINES, rounds, pool, also=[Job(c, "ref", None) for c in cases])
    assert found == [_one_engine_alone(e, rounds) for e in ENGINES]
    assert len(reference) == len(cases)
    # the reference, then each engine's stages until its kill (3 simulated, 1 wall-clock)
    assert [len(batch) for batch in pool.batches] == [12] + [3, 1, 3] + [3, 1] * 3 + [3] + [
        3, 1, 3, 1, 3
    ] + [3, 1] + [3]  # fmt: skip
