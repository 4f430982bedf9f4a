"""no_double_completion: fulfilment and receipt at most once per purchase and per paid session."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from simulator.checkers.base import FinalFacts, Outcome, Violation, outcome

NAME = "no_double_completion"


class NoDoubleCompletion:
    name = NAME
    types = frozenset({"fulfilment", "email.sent"})

    def __init__(self) -> None:
        self.grants_by_purchase: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)
        self.grants_by_session: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)
        self.receipts: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)

    def observe(self, entry: dict[str, Any]) -> None:
        if entry["type"] == "fulfilment":
            self.grants_by_purchase[entry["purchase_id"]].append(entry)
            self.grants_by_session[entry["session_id"]].append(entry)
        else:
            self.receipts[entry["purchase_id"]].append(entry)

    def finish(self, facts: FinalFacts) -> Outcome:
        found: list[Violation] = []
        for pid, grants in self.grants_by_purchase.items():
            if len(grants) > 1:
                found.append(
                    _violation(
                        f"purchase {pid} fulfilled {len(grants)} times", grants, purchase_id=pid
                    )
                )
        for sid, grants in self.grants_by_session.items():
            purchases = sorted({g["purchase_id"] for g in grants})
            if len(purchases) > 1:
                found.append(
                    _violation(
                        f"paid session {sid} fulfilled for {len(purchases)} purchases ({', '.join(purchases)})",
                        grants,
                        session_id=sid,
                    )
                )
        for pid, sent in self.receipts.items():
            if len(sent) > 1:
                found.append(
                    _violation(
                        f"purchase {pid} got {len(sent)} receipt emails", sent, purchase_id=pid
                    )
                )
        return outcome(NAME, found)


def _violation(detail: str, entries: list[dict[str, Any]], **ids: str) -> Violation:
    return Violation(
        NAME, detail, at=entries[1]["t"], evidence=tuple(e["seq"] for e in entries), **ids
    )
