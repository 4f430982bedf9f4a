"""no_limit_bypass: seats held (class-rep pending or completed) never exceed the limit, at any instant."""

from __future__ import annotations

from typing import Any

from simulator.checkers.base import FinalFacts, Outcome, Violation, outcome
from simulator.checkers.purchase_replay import PurchaseReplay

NAME = "no_limit_bypass"


class NoLimitBypass:
    name = NAME
    types = frozenset({"run.start", "store.write", "preload.purchase"})

    def __init__(self) -> None:
        self.replay = PurchaseReplay()
        self.limits: dict[str, int] = {}
        self.first: dict[str, Violation] = {}
        self.peak: dict[str, int] = {}

    def observe(self, entry: dict[str, Any]) -> None:
        if entry["type"] == "run.start":
            self.limits = {p["id"]: p["class_rep_limit"] for p in entry.get("programs", [])}
            return
        row = self.replay.apply(entry)
        if row is None or not row.class_rep or row.program_id not in self.limits:
            return
        held = len(self.replay.holding.get(row.program_id, ()))
        limit = self.limits[row.program_id]
        self.peak[row.program_id] = max(self.peak.get(row.program_id, 0), held)
        if held > limit and row.program_id not in self.first:
            self.first[row.program_id] = Violation(
                NAME,
                f"program {row.program_id}: {held} class-rep purchases hold a seat, limit {limit}",
                at=entry["t"],
                evidence=(entry["seq"],),
                purchase_id=row.id,
            )

    def finish(self, facts: FinalFacts) -> Outcome:
        found = []
        for program_id, violation in self.first.items():
            detail = f"{violation.detail} (peak {self.peak[program_id]})"
            found.append(
                Violation(NAME, detail, violation.at, violation.evidence, violation.purchase_id)
            )
        for program in facts.programs:
            completed = [
                p["_id"]
                for p in facts.purchases
                if p.get("program_id") == program["_id"]
                and p.get("class_rep")
                and p.get("status") == "completed"
            ]
            if len(completed) > program["class_rep_limit"]:
                found.append(
                    Violation(
                        NAME,
                        f"program {program['_id']} ends with {len(completed)} completed class-rep purchases, "
                        f"limit {program['class_rep_limit']}",
                        at=facts.end_t,
                        evidence=self.replay.evidence(program["_id"], completed),
                    )
                )
        return outcome(NAME, found)
