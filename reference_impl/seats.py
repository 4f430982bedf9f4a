"""The class-rep seat ledger: a conditional counter on the program, one document per held seat.

Why this shape: the cost of a seat operation must not grow with the seats held. The program
document keeps only its counter (`class_rep_count`, the schema checkers read) and the moves in
flight (`seat_moves`, bounded by concurrency); each held seat is its own `seat_holds` document,
keyed by its reservation ref.

Without multi-document transactions a counter move and a hold change cannot be one write, so
each move is written on the program document first — in the very update that moves the counter
(reserve), or before the hold changes (release) — and is cleared when done. A move its writer
did not finish (a crash, a stall) is finished by `finish_stale_moves` (reconcile, after the
grace) from what the move and the hold document say. Every step is conditional, so a stalled
writer that wakes after reconcile finished its move changes nothing:

    reserve(ref)  1. program {count < limit}  ->  count + 1, seat_moves[ref] = +1  (else: full)
                  2. insert hold {_id: ref, state: held}       (duplicate: already inserted)
                  3. unset seat_moves[ref]
    release(ref)  1. seat_moves[m] = -1 for ref                (m: a fresh id per call)
                  2. hold {_id: ref, state: held}  ->  released by m  (one caller wins)
                  3. released by m: program {seat_moves[m] exists} -> count - 1, unset m
                     otherwise: unset m

Released holds stay as tombstones, so a stalled reserve's step 2 cannot bring a hold back.

Reconcile audits held seats against their purchases. A hold is `audit: due` from its insert
until reconcile has seen it owned by a completed purchase (`vouch`) or it is released: an index
lookup of `due` holds then finds only the seats still in doubt, however many are sold.
"""

from __future__ import annotations

from contextlib import suppress
from typing import Any

from pymongo.errors import DuplicateKeyError

from reference_impl.ports import Clock, IdSource
from reference_impl.schema import PROGRAMS, SEAT_HOLDS
from reference_impl.store import AsyncDatabase

HOLD_HELD = "held"
HOLD_RELEASED = "released"
#: `audit` of a hold reconcile has not yet seen owned by a completed purchase
AUDIT_DUE = "due"
MOVES = "seat_moves"

#: a projection for reading a program without its moves in flight (the limit and price suffice)
WITHOUT_SEAT_MOVES = {MOVES: 0}


def hold_doc(ref: str, *, program_id: str, purchase_id: str, at: float) -> dict[str, Any]:
    """The document of one held seat (also used by the simulator to preload purchases)."""
    return {
        "_id": ref,
        "program_id": program_id,
        "purchase_id": purchase_id,
        "at": at,
        "state": HOLD_HELD,
        "audit": AUDIT_DUE,
    }


class SeatLedger:
    def __init__(self, db: AsyncDatabase, ids: IdSource, clock: Clock) -> None:
        self._programs = db[PROGRAMS]
        self._holds = db[SEAT_HOLDS]
        self._ids = ids
        self._clock = clock

    async def reserve(
        self, program: dict[str, Any], *, purchase_id: str, ref: str, at: float
    ) -> bool:
        """Take one seat for `ref` if one is free. False when the program is full."""
        move = {"ref": ref, "d": 1, "purchase_id": purchase_id, "at": at}
        if not await self._count_up(program, ref, move):
            return False
        await self._insert_hold(
            hold_doc(ref, program_id=program["_id"], purchase_id=purchase_id, at=at)
        )
        await self._programs.update_one({"_id": program["_id"]}, {"$unset": {f"{MOVES}.{ref}": ""}})
        return True

    async def _count_up(self, program: dict[str, Any], ref: str, move: dict[str, Any]) -> bool:
        """Step 1 of reserve: the counter moves only below the limit, with its move recorded."""
        result = await self._programs.update_one(
            {
                "_id": program["_id"],
                "class_rep_count": {"$lt": program["class_rep_limit"]},
                f"{MOVES}.{ref}": {"$exists": False},
            },
            {"$inc": {"class_rep_count": 1}, "$set": {f"{MOVES}.{ref}": move}},
        )
        return result.modified_count == 1

    async def release(self, program_id: str, ref: str) -> bool:
        """Give back the seat of `ref`. True only for the call that actually released it."""
        key = self._ids.new_id("seatmove")
        move = {"ref": ref, "d": -1, "at": self._clock.now()}
        await self._programs.update_one({"_id": program_id}, {"$set": {f"{MOVES}.{key}": move}})
        won = await self._holds.update_one(
            {"_id": ref, "state": HOLD_HELD},
            {"$set": {"state": HOLD_RELEASED, "by": key}, "$unset": {"audit": ""}},
        )
        mine = won.modified_count == 1 or await self._released_by(ref, key)
        await self._close_release(program_id, key, mine)
        return won.modified_count == 1

    async def holders(self) -> list[tuple[str, dict[str, Any]]]:
        """(program id, reservation {ref, purchase_id, at}) for every seat currently held."""
        return _reservations(await self._holds.find({"state": HOLD_HELD}).to_list())

    async def in_doubt(self, before: float) -> list[tuple[str, dict[str, Any]]]:
        """`holders()` reserved before `before` and not vouched for."""
        query = {"audit": AUDIT_DUE, "state": HOLD_HELD, "at": {"$lt": before}}
        return _reservations(await self._holds.find(query).to_list())

    async def vouch(self, ref: str) -> None:
        """The seat of `ref` is owned for good (its purchase completed): audit it no more."""
        await self._holds.update_one({"_id": ref, "state": HOLD_HELD}, {"$unset": {"audit": ""}})

    async def finish_stale_moves(self, horizon: float) -> None:
        """Finish the moves begun before `horizon` that their writers left (crash or stall)."""
        for program in await self._programs.find({}, {MOVES: 1}).to_list():
            for key, move in sorted((program.get(MOVES) or {}).items()):
                if move["at"] >= horizon:
                    continue
                if move["d"] > 0:
                    # the counter moved: the hold must exist (a tombstone if already released)
                    await self._insert_hold(
                        hold_doc(
                            move["ref"],
                            program_id=program["_id"],
                            purchase_id=move["purchase_id"],
                            at=move["at"],
                        )
                    )
                    await self._programs.update_one(
                        {"_id": program["_id"]}, {"$unset": {f"{MOVES}.{key}": ""}}
                    )
                    continue
                await self._finish_release(program["_id"], key, move)

    async def _finish_release(self, program_id: str, key: str, move: dict[str, Any]) -> None:
        """Steps 2 and 3 of a release its writer left: the hold (if still held), then the
        counter, moved down only if this release is the one that released the hold."""
        await self._holds.update_one(
            {"_id": move["ref"], "state": HOLD_HELD},
            {"$set": {"state": HOLD_RELEASED, "by": key}, "$unset": {"audit": ""}},
        )
        await self._close_release(program_id, key, await self._released_by(move["ref"], key))

    async def _insert_hold(self, doc: dict[str, Any]) -> None:
        with suppress(DuplicateKeyError):  # inserted already, by the reserver or by reconcile
            await self._holds.insert_one(doc)

    async def _released_by(self, ref: str, key: str) -> bool:
        hold = await self._holds.find_one({"_id": ref})
        return hold is not None and hold.get("by") == key

    async def _close_release(self, program_id: str, key: str, mine: bool) -> None:
        """Step 3 of release: the counter moves down once, by whoever clears the move first."""
        path = f"{MOVES}.{key}"
        if mine:
            await self._programs.update_one(
                {"_id": program_id, path: {"$exists": True}},
                {"$inc": {"class_rep_count": -1}, "$unset": {path: ""}},
            )
        else:
            await self._programs.update_one({"_id": program_id}, {"$unset": {path: ""}})


def _reservations(holds: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (h["program_id"], {"ref": h["_id"], "purchase_id": h["purchase_id"], "at": h["at"]})
        for h in holds
    ]
