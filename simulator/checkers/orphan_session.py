"""no_orphan_session: every Checkout Session created is referenced by exactly one purchase.

A session two purchases reference is a violation whenever it is seen; one no purchase
references is judged at quiescence only (a create whose answer was lost is the sweep's to
settle, and an unfinished run may end before it does).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from simulator.checkers.base import FinalFacts, Outcome, Violation, outcome

NAME = "no_orphan_session"


class NoOrphanSession:
    name = NAME
    types = frozenset({"stripe.session", "adversary.foreign_session"})

    def __init__(self) -> None:
        self.created: dict[str, dict[str, Any]] = {}
        self.foreign: set[str] = set()  # made outside the engine: no purchase of its own

    def observe(self, entry: dict[str, Any]) -> None:
        if entry["type"] == "adversary.foreign_session":
            self.foreign.add(entry["session_id"])
            self.created.pop(entry["session_id"], None)
        elif entry.get("action") == "created" and entry["id"] not in self.foreign:
            self.created.setdefault(entry["id"], entry)

    def finish(self, facts: FinalFacts) -> Outcome:
        refs: defaultdict[str, list[str]] = defaultdict(list)
        for p in facts.purchases:
            if p.get("stripe_session_id"):
                refs[p["stripe_session_id"]].append(p["_id"])
        found = []
        for session_id, created in self.created.items():
            owners = refs.get(session_id, [])
            if len(owners) == 1 or (not owners and not facts.quiescent):
                continue  # unreferenced in an unfinished run: the sweep may still settle it
            detail = (
                f"session {session_id} is referenced by no purchase"
                if not owners
                else f"session {session_id} is referenced by {len(owners)} purchases ({', '.join(owners)})"
            )
            found.append(
                Violation(
                    NAME, detail, at=created["t"], evidence=(created["seq"],), session_id=session_id
                )
            )
        return outcome(NAME, found, known=facts.quiescent)
