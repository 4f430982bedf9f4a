"""Judging a run: stream its history once through every checker, then read the final facts.

Works the same on a run that just finished and on one stored on disk (`paysim check`), because
it reads only `history.jsonl`, `final_state.json` and `ledgers.json`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reference_impl.lock_stats import LockStats
from simulator.checkers import UNKNOWN, VIOLATED, FinalFacts, Outcome, new_checkers
from simulator.checkers.evidence import Evidence
from simulator.run_folder import RunFolderError, read_history, read_json_object
from simulator.scenario import Scenario
from simulator.thresholds import check_thresholds

INCOMPLETE = "incomplete"


#: history entries that say the run's own infrastructure failed, not the engine (a Redis the
#: scenario did not take down); the run is then `incomplete`, exit code 4
INFRASTRUCTURE_FAILURES = {"redis.unreachable": "Redis unreachable"}


@dataclass
class Judgement:
    verdict: str  # pass / fail / unknown / incomplete
    outcomes: list[Outcome]
    vacuous: list[str]
    thresholds: dict[str, Any]
    lock_wait_ms: dict[str, dict[str, float | int]]
    quiescent: bool
    history_sha256: str
    #: "infrastructure: Redis unreachable from t=12.3s" when the run could not be judged
    infrastructure: str | None = None

    @property
    def violations(self) -> list[dict[str, Any]]:
        return [v.as_dict() for o in self.outcomes for v in o.violations]

    @property
    def invariants(self) -> dict[str, str]:
        return {o.invariant: o.status for o in self.outcomes}

    @property
    def exit_code(self) -> int:
        if self.verdict == INCOMPLETE:
            return 4
        if self.verdict != "pass":
            return 1
        return 0 if self.thresholds["met"] else 3


def judge(
    history: Iterable[dict[str, Any]],
    final_state: dict[str, Any],
    ledgers: dict[str, Any],
    scenario: Scenario,
    history_sha256: str = "",
) -> Judgement:
    checkers = new_checkers()
    by_type: dict[str, list[Any]] = {}
    for checker in checkers:
        for kind in checker.types:
            by_type.setdefault(kind, []).append(checker)
    evidence = Evidence()
    locks = LockStats(now=lambda: 0.0)
    quiescent, end_t = False, 0.0
    infrastructure: str | None = None
    for entry in history:
        kind = entry["type"]
        if kind in INFRASTRUCTURE_FAILURES and infrastructure is None:
            what = INFRASTRUCTURE_FAILURES[kind]
            infrastructure = f"infrastructure: {what} from t={entry['t']:g}s"
        for checker in by_type.get(kind, ()):
            checker.observe(entry)
        evidence.observe(entry)
        if kind.startswith("lock."):
            _feed_lock_stats(locks, entry)
        elif kind == "liveness.end":
            quiescent = bool(entry.get("quiescent"))
        end_t = entry["t"]
    facts = FinalFacts(final_state, ledgers, quiescent, end_t)
    outcomes = [c.finish(facts) for c in checkers]
    fault_kinds = sorted({f.kind for f in scenario.faults})
    vacuous = evidence.missing(list(getattr(scenario, "expect", ()) or ()), fault_kinds)
    statuses = {o.status for o in outcomes}
    if infrastructure is not None:
        verdict = INCOMPLETE  # whatever the checkers say, they judged a broken world
    elif VIOLATED in statuses or vacuous:
        verdict = "fail"
    elif UNKNOWN in statuses:
        verdict = "unknown"
    else:
        verdict = "pass"
    snapshot = locks.snapshot()
    return Judgement(
        verdict=verdict,
        outcomes=outcomes,
        vacuous=[f"the run never showed {m.replace('fault:', 'the fault ')}" for m in vacuous],
        thresholds=check_thresholds(scenario.thresholds, snapshot),
        lock_wait_ms={family: snap.report_row() for family, snap in snapshot.items()},
        quiescent=quiescent,
        history_sha256=history_sha256,
        infrastructure=infrastructure,
    )


def _feed_lock_stats(stats: LockStats, entry: dict[str, Any]) -> None:
    kind, key, wait = entry["type"], entry.get("key", ""), entry.get("wait_s")
    if kind == "lock.granted":
        stats.granted(key, wait or 0.0)
    elif kind == "lock.timeout":
        stats.timed_out(key, wait)
    elif kind == "lock.released" and entry.get("hold_s") is not None:
        stats.released(key, entry["hold_s"])


def judge_dir(run_dir: Path, scenario: Scenario) -> Judgement:
    """Judge a stored run; a file that does not hold what a run writes is a `RunFolderError`
    naming it (and the history line), never a checker's traceback."""
    history_path = run_dir / "history.jsonl"
    final_state = read_json_object(run_dir / "final_state.json")
    ledgers = read_json_object(run_dir / "ledgers.json")
    digest = hashlib.sha256()
    last = [0]

    def entries() -> Iterator[dict[str, Any]]:
        for entry in read_history(history_path):
            last[0] = entry["seq"]
            yield entry

    def hashed() -> Iterator[dict[str, Any]]:
        with history_path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        yield from entries()

    try:
        judgement = judge(hashed(), final_state, ledgers, scenario)
    except RunFolderError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        # a well-formed line (or final state) that no run writes: name where the checkers stopped
        raise RunFolderError(
            history_path,
            f"an entry a run does not write (after seq {last[0]}; or final_state.json / "
            f"ledgers.json do not match it): {type(exc).__name__}: {exc}",
        ) from None
    judgement.history_sha256 = digest.hexdigest()
    return judgement
