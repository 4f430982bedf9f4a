"""Running many runs: the local pool, and mutation detection with every engine at once.

`detect` hands out all engines' rounds together; it must settle each engine exactly as running
that engine alone, round after round, would (the sequential version is written out here).
"""

from __future__ import annotations

import random
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from simulator.scenario import Scenario, Topology
from simulator.suite import Case, CaseResult, Detection, Job, by_round, caught_by, detect
from simulator.sweep import LocalPool, is_wall_clock

#: (engine, scenario, seed) -> invariants the run violates; absent: it passes
VIOLATES = {
    ("A", "s2", 2): ["no_double_completion"],
    ("A", "s1", 3): ["counter_consistent"],  # round 3: never reached, A is caught in round 2
    ("C", "s1", 1): ["no_limit_bypass"],
    ("C", "s3", 1): ["counter_consistent", "no_limit_bypass"],
    ("D", "s3", 3): ["no_lost_payment"],
}
ENGINES = ["A", "B", "C", "D"]


def _cases() -> list[Case]:
    return [
        Case(Scenario(name=name), f"{name}.toml", seed, name)
        for name in ("s1", "s2", "s3")
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
    runs = 0
    for n, cases in enumerate(rounds, start=1):
        results = [_result(Job(c, engine, None)) for c in cases]
        runs += len(results)
        catching = [r.summary for r in results if caught_by(r.summary)]
        if catching:
            names = sorted({i for s in catching for i in caught_by(s)})
            return Detection(engine, True, names, n, runs, catching[0])
    return Detection(engine, False, [], None, runs, None)


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
    assert [(d.caught, d.seeds_to_detection) for d in found] == [
        (True, 2),
        (False, None),
        (True, 1),
        (True, 3),
    ]
    assert found[2].invariants == ["counter_consistent", "no_limit_bypass"]
    assert sorted(heard) == ENGINES
    # the reference runs come back in job order; no round past an engine's catch is handed out
    assert [(r.summary["scenario"], r.summary["seed"]) for r in reference] == [
        (c.stem, c.seed) for c in cases
    ]
    per_engine = {e: sum(1 for j in pool.submitted if j.engine == e) for e in ENGINES}
    assert per_engine == {"A": 6, "B": 9, "C": 3, "D": 9}
    assert len(seen) == len(pool.submitted)


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
    assert [len(batch) for batch in pool.batches] == [9] + [3] * (2 + 3 + 1 + 3)
