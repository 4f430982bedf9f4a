"""The class-rep seat ledger: a counter plus the list of reservations, in ONE program document.

Single-document updates are atomic in MongoDB, so reserving (`$inc` + `$push` under a `$lt`
guard) and releasing (`$inc -1` + `$pull` of one reservation) are each all-or-nothing and
idempotent per reservation ref: a seat can never be released twice, whichever locks fail.
A purchase holds a seat through the ref stored on it (`seat_ref`); whoever moves the purchase
out of a seat-holding status gets that ref back from the same atomic update and releases it.
"""

from __future__ import annotations

from typing import Any

from reference_impl.schema import PROGRAMS
from reference_impl.store import AsyncDatabase

#: a projection for reading a program without its reservations: one entry per seat sold, so a
#: reader that only needs the limit and price need not fetch (and copy) the whole list
WITHOUT_SEAT_HOLDERS = {"seat_holders": 0}


class SeatLedger:
    def __init__(self, db: AsyncDatabase) -> None:
        self._programs = db[PROGRAMS]

    async def reserve(
        self, program: dict[str, Any], *, purchase_id: str, ref: str, at: float
    ) -> bool:
        """Take one seat for `ref` if one is free. False when the program is full."""
        result = await self._programs.update_one(
            {
                "_id": program["_id"],
                "class_rep_count": {"$lt": program["class_rep_limit"]},
                "seat_holders.ref": {"$ne": ref},
            },
            {
                "$inc": {"class_rep_count": 1},
                "$push": {"seat_holders": {"ref": ref, "purchase_id": purchase_id, "at": at}},
            },
        )
        return result.modified_count == 1

    async def release(self, program_id: str, ref: str) -> bool:
        """Give back the seat of `ref`. True only for the call that actually released it."""
        result = await self._programs.update_one(
            {"_id": program_id, "seat_holders.ref": ref},
            {"$inc": {"class_rep_count": -1}, "$pull": {"seat_holders": {"ref": ref}}},
        )
        return result.modified_count == 1

    async def holders(self) -> list[tuple[str, dict[str, Any]]]:
        """(program id, reservation) for every seat currently reserved."""
        programs = await self._programs.find({"seat_holders.0": {"$exists": True}}).to_list()
        return [(p["_id"], h) for p in programs for h in p.get("seat_holders", [])]
