"""Replays purchase and program documents from `store.write` history lines.

Several invariants speak about "every instant"; the history records, after every engine write,
the written document's resulting fields, so the store's state at any point can be rebuilt.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from reference_impl.schema import SEAT_HOLDING


@dataclass
class PurchaseRow:
    id: str
    user_id: str | None
    program_id: str | None
    class_rep: bool
    status: str | None
    seq: int  # history line of the write that left the purchase in this state


class PurchaseReplay:
    """Current status of every purchase, and who holds seats, updated one write at a time."""

    def __init__(self) -> None:
        self.rows: dict[str, PurchaseRow] = {}
        self.holding: dict[str, set[str]] = {}  # program -> class-rep purchases pending/completed
        self.pending: dict[tuple[str | None, str | None], set[str]] = {}  # (user, program) -> ids
        self.counter_seq: dict[str, int] = {}  # program -> last write of its counter

    def evidence(self, program_id: str, purchase_ids: list[str]) -> tuple[int, ...]:
        """The history lines behind a final-state claim: the counter's and the purchases' last writes."""
        seqs = [self.rows[p].seq for p in purchase_ids if p in self.rows]
        if program_id in self.counter_seq:
            seqs.append(self.counter_seq[program_id])
        return tuple(sorted(seqs))

    def apply(self, entry: dict[str, Any]) -> PurchaseRow | None:
        doc = entry.get("doc")
        if entry.get("coll") == "programs" and entry.get("id") is not None:
            self.counter_seq[str(entry["id"])] = entry["seq"]
            return None
        is_purchase = entry.get("coll") == "purchases" or entry["type"] == "preload.purchase"
        if not is_purchase or not doc or entry.get("id") is None:
            return None
        pid = str(entry["id"])
        old = self.rows.get(pid)
        if old is not None:
            self._forget(old)
        row = PurchaseRow(
            pid,
            doc.get("user_id"),
            doc.get("program_id"),
            bool(doc.get("class_rep")),
            doc.get("status"),
            entry["seq"],
        )
        self.rows[pid] = row
        if row.class_rep and row.status in SEAT_HOLDING and row.program_id:
            self.holding.setdefault(row.program_id, set()).add(pid)
        if row.status == "pending":
            self.pending.setdefault((row.user_id, row.program_id), set()).add(pid)
        return row

    def _forget(self, row: PurchaseRow) -> None:
        if row.program_id in self.holding:
            self.holding[row.program_id].discard(row.id)
        key = (row.user_id, row.program_id)
        if key in self.pending:
            self.pending[key].discard(row.id)
