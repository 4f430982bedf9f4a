"""single_pending_per_user: at most one pending purchase per (user, program) at any instant."""

from __future__ import annotations

from typing import Any

from simulator.checkers.base import FinalFacts, Outcome, Violation, outcome
from simulator.checkers.purchase_replay import PurchaseReplay

NAME = "single_pending_per_user"


class SinglePendingPerUser:
    name = NAME
    types = frozenset({"store.write", "preload.purchase"})

    def __init__(self) -> None:
        self.replay = PurchaseReplay()
        self.found: dict[tuple[Any, Any], Violation] = {}

    def observe(self, entry: dict[str, Any]) -> None:
        row = self.replay.apply(entry)
        if row is None or row.status != "pending":
            return
        key = (row.user_id, row.program_id)
        pending = self.replay.pending.get(key, set())
        if len(pending) > 1 and key not in self.found:
            self.found[key] = Violation(
                NAME,
                f"user {row.user_id} has {len(pending)} pending purchases of {row.program_id}: "
                f"{', '.join(sorted(pending))}",
                at=entry["t"],
                evidence=(entry["seq"],),
                purchase_id=row.id,
            )

    def finish(self, facts: FinalFacts) -> Outcome:
        return outcome(NAME, list(self.found.values()))
