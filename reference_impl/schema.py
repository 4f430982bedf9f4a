"""The store schema that checkers read (DESIGN.md): collection names, statuses, indexes."""

from __future__ import annotations

from typing import Any

from reference_impl.store import AsyncDatabase

PROGRAMS = "programs"
PURCHASES = "purchases"
#: reference engine: one document per (user, program) pointing at the current purchase
SLOTS = "purchase_slots"
#: reference engine: paid sessions it will never honour (foreign, mismatching), kept for a human
WEBHOOK_DEAD_LETTERS = "webhook_dead_letters"
#: reference engine: where each of its sweeps got to (`_id` names the sweep)
SWEEP_MARKS = "sweep_marks"
#: reference engine: one document per held class-rep seat, keyed by its reservation ref
SEAT_HOLDS = "seat_holds"

PENDING = "pending"
COMPLETED = "completed"
FAILED = "failed"
CANCELLED = "cancelled"
EXPIRED = "expired"
REFUNDED = "refunded"
STATUSES = (PENDING, COMPLETED, FAILED, CANCELLED, EXPIRED, REFUNDED)
#: statuses in which a class-rep purchase holds a seat
SEAT_HOLDING = (PENDING, COMPLETED)


def program_doc(
    program_id: str, *, class_rep_limit: int, price_cents: int = 5000
) -> dict[str, Any]:
    return {
        "_id": program_id,
        "class_rep_limit": class_rep_limit,
        "class_rep_count": 0,
        "price_cents": price_cents,
    }


async def install_programs(db: AsyncDatabase, programs: list[dict[str, Any]]) -> None:
    for doc in programs:
        await db[PROGRAMS].insert_one(dict(doc))
