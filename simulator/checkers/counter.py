"""counter_consistent: at quiescence `class_rep_count` equals the seats actually held; never negative.

"Actually held" is decided from Stripe's side, not the engine's: a completed class-rep purchase
holds a seat; a pending one only while its Checkout Session is still open (at quiescence none
is), so a pending purchase left behind by an expired session is a leak.
"""

from __future__ import annotations

from typing import Any

from simulator.checkers.base import FinalFacts, Outcome, Violation, outcome
from simulator.checkers.purchase_replay import PurchaseReplay

NAME = "counter_consistent"


class CounterConsistent:
    name = NAME
    types = frozenset({"store.write", "preload.purchase"})

    def __init__(self) -> None:
        self.negative: dict[str, Violation] = {}
        self.replay = PurchaseReplay()

    def observe(self, entry: dict[str, Any]) -> None:
        self.replay.apply(entry)
        if entry.get("coll") != "programs" or not entry.get("doc"):
            return
        count = entry["doc"].get("class_rep_count")
        program = str(entry.get("id"))
        if isinstance(count, int) and count < 0 and program not in self.negative:
            self.negative[program] = Violation(
                NAME,
                f"program {program}: class_rep_count went negative ({count})",
                entry["t"],
                (entry["seq"],),
            )

    def finish(self, facts: FinalFacts) -> Outcome:
        found = list(self.negative.values())
        if facts.quiescent:
            for program in facts.programs:
                held = held_seats(program["_id"], facts)
                count = program.get("class_rep_count", 0)
                if count != len(held):
                    involved = [
                        p["_id"]
                        for p in facts.purchases
                        if p.get("program_id") == program["_id"] and p.get("class_rep")
                    ]
                    kind = "leak" if count > len(held) else "drift below the seats held"
                    found.append(
                        Violation(
                            NAME,
                            f"program {program['_id']}: class_rep_count={count} but {len(held)} seats held ({kind})",
                            at=facts.end_t,
                            evidence=self.replay.evidence(program["_id"], involved),
                        )
                    )
        return outcome(NAME, found, known=facts.quiescent)


def held_seats(program_id: str, facts: FinalFacts) -> list[str]:
    held = []
    for p in facts.purchases:
        if p.get("program_id") != program_id or not p.get("class_rep"):
            continue
        session = facts.sessions.get(p.get("stripe_session_id") or "")
        if p.get("status") == "completed" or (
            p.get("status") == "pending" and session and session["status"] == "open"
        ):
            held.append(p["_id"])
    return held
