"""The seat ledger: atomic against the limit, released once, repaired after any crash or stall.

Crashes and stalls are injected before each store call the ledger makes, one call at a time, so
every point between two writes is tried; after reconcile's repair (`finish_stale_moves`) the
counter must equal the seats held and nothing may be left in flight.
"""

from __future__ import annotations

import math
from contextlib import suppress
from typing import Any

import anyio
import pytest

from reference_impl.schema import SEAT_HOLDS, program_doc
from reference_impl.seats import MOVES, SeatLedger
from reference_impl.store import AsyncDatabase, open_database
from simulator.ids import SequentialIds
from tests.enginehelpers import run_virtual

PROG = "prog"
#: store calls of one reserve (count, hold, clear) and of one release that wins (move, hold, count)
RESERVE_CALLS = 3
RELEASE_CALLS = 3


class Crash(Exception):
    """The process died before this store call."""


class _Zero:
    def now(self) -> float:
        return 0.0


class _Faults:
    """Store observer: the call numbered `crash_at` raises; the one numbered `stall_at` waits
    for `resume` first (a paused process). Counting starts at `arm()`."""

    def __init__(self) -> None:
        self.calls = 0
        self.crash_at: int | None = None
        self.stall_at: int | None = None
        self.stalled = anyio.Event()
        self.resume = anyio.Event()

    def arm(self, *, crash_at: int | None = None, stall_at: int | None = None) -> None:
        self.calls, self.crash_at, self.stall_at = 0, crash_at, stall_at

    async def before(self, collection: str, op: str, args: Any, kwargs: Any) -> None:
        self.calls += 1
        if self.calls == self.crash_at:
            raise Crash(f"before {collection}.{op}")
        if self.calls == self.stall_at:
            self.stalled.set()
            await self.resume.wait()
        await anyio.lowlevel.checkpoint()

    def after(self, collection: str, op: str, args: Any, kwargs: Any, result: Any) -> None:
        pass


async def _setup(limit: int = 2) -> tuple[AsyncDatabase, SeatLedger, _Faults, dict[str, Any]]:
    faults = _Faults()
    db = AsyncDatabase(open_database().sync, faults)
    await db.programs.insert_one(program_doc(PROG, class_rep_limit=limit))
    program = await db.programs.find_one({"_id": PROG})
    return db, SeatLedger(db, SequentialIds(), _Zero()), faults, program


async def _state(db: AsyncDatabase) -> tuple[int, int, dict[str, Any]]:
    """(counter, seats held by hold documents, moves in flight)."""
    program = await db.programs.find_one({"_id": PROG})
    held = await db[SEAT_HOLDS].find({"program_id": PROG, "state": "held"}).to_list()
    return program["class_rep_count"], len(held), program.get(MOVES) or {}


async def _repaired(db: AsyncDatabase, ledger: SeatLedger) -> tuple[int, int]:
    await ledger.finish_stale_moves(math.inf)
    count, held, moves = await _state(db)
    assert moves == {}, "reconcile left a move in flight"
    assert count == held, f"counter {count} but {held} seats held"
    return count, held


def test_never_exceeds_limit_and_releases_each_ref_once() -> None:
    async def main() -> None:
        db, ledger, _, program = await _setup(limit=2)
        granted: list[bool] = []

        async def reserve(i: int) -> None:
            granted.append(await ledger.reserve(program, purchase_id=f"p{i}", ref=f"r{i}", at=0.0))

        async with anyio.create_task_group() as tg:
            for i in range(8):
                tg.start_soon(reserve, i)
        assert granted.count(True) == 2
        assert await _state(db) == (2, 2, {})
        holder = (await ledger.holders())[0][1]["ref"]
        releases: list[bool] = []

        async def release() -> None:
            releases.append(await ledger.release(PROG, holder))

        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(release)
        assert sorted(releases) == [False, False, True]
        assert await _state(db) == (1, 1, {})
        assert await ledger.release(PROG, holder) is False
        assert await _state(db) == (1, 1, {})

    run_virtual(main)


def test_the_program_document_does_not_grow_with_the_seats_held() -> None:
    async def main() -> None:
        db, ledger, _, program = await _setup(limit=500)
        for i in range(300):
            assert await ledger.reserve(program, purchase_id=f"p{i}", ref=f"r{i}", at=0.0)
        stored = await db.programs.find_one({"_id": PROG})
        assert stored == {**program, "class_rep_count": 300, MOVES: {}}
        assert len(await ledger.holders()) == 300

    run_virtual(main)


def test_only_seats_in_doubt_are_audited_and_a_vouched_seat_is_still_a_seat() -> None:
    """Reconcile reads `in_doubt` holds each sweep: reserved before the horizon, held, and not
    vouched for. Vouching changes nothing else: the seat is held, counted and releasable."""

    async def main() -> None:
        db, ledger, _, program = await _setup(limit=5)
        for i, at in enumerate((1.0, 2.0, 3.0, 9.0)):
            assert await ledger.reserve(program, purchase_id=f"p{i}", ref=f"r{i}", at=at)
        assert [h["ref"] for _, h in await ledger.in_doubt(before=5.0)] == ["r0", "r1", "r2"]
        await ledger.vouch("r1")
        assert await ledger.release(PROG, "r2")
        assert [h["ref"] for _, h in await ledger.in_doubt(before=5.0)] == ["r0"]
        assert [h["ref"] for _, h in await ledger.in_doubt(before=10.0)] == ["r0", "r3"]
        assert [h["ref"] for _, h in await ledger.holders()] == ["r0", "r1", "r3"]
        assert await _state(db) == (3, 3, {})
        assert await ledger.release(PROG, "r1")  # vouched, still a seat: released once
        assert await _state(db) == (2, 2, {})
        await ledger.vouch("r1")  # a released seat stays released
        assert [h["ref"] for _, h in await ledger.holders()] == ["r0", "r3"]

    run_virtual(main)


@pytest.mark.parametrize("crash_at", range(1, RESERVE_CALLS + 1))
def test_a_reserve_cut_short_anywhere_is_finished_by_reconcile(crash_at: int) -> None:
    async def main() -> None:
        db, ledger, faults, program = await _setup()
        faults.arm(crash_at=crash_at)
        with pytest.raises(Crash):
            await ledger.reserve(program, purchase_id="p", ref="r", at=0.0)
        faults.arm()
        # nothing happened before the counter moved; after it, the seat is held
        assert await _repaired(db, ledger) == ((0, 0) if crash_at == 1 else (1, 1))

    run_virtual(main)


@pytest.mark.parametrize("crash_at", range(1, RELEASE_CALLS + 1))
def test_a_release_cut_short_anywhere_is_finished_by_reconcile(crash_at: int) -> None:
    async def main() -> None:
        db, ledger, faults, program = await _setup()
        assert await ledger.reserve(program, purchase_id="p", ref="r", at=0.0)
        faults.arm(crash_at=crash_at)
        with pytest.raises(Crash):
            await ledger.release(PROG, "r")
        faults.arm()
        # once the move is recorded, the release happens exactly once
        assert await _repaired(db, ledger) == ((1, 1) if crash_at == 1 else (0, 0))
        assert await ledger.release(PROG, "r") is (crash_at == 1)
        assert await _repaired(db, ledger) == (0, 0)

    run_virtual(main)


@pytest.mark.parametrize(
    "op, stall_at",
    [("reserve", n) for n in range(1, RESERVE_CALLS + 1)]
    + [("release", n) for n in range(1, RELEASE_CALLS + 1)],
)
def test_a_stalled_writer_waking_after_reconcile_changes_nothing(op: str, stall_at: int) -> None:
    """Reconcile finishes the move while its writer sleeps; the writer's late steps are no-ops."""

    async def main() -> None:
        db, ledger, faults, program = await _setup()
        if op == "release":
            assert await ledger.reserve(program, purchase_id="p", ref="r", at=0.0)
        outcome: list[bool] = []

        async def writer() -> None:
            if op == "reserve":
                outcome.append(await ledger.reserve(program, purchase_id="p", ref="r", at=0.0))
            else:
                outcome.append(await ledger.release(PROG, "r"))

        faults.arm(stall_at=stall_at)
        async with anyio.create_task_group() as tg:
            tg.start_soon(writer)
            await faults.stalled.wait()
            await _repaired(db, ledger)
            faults.resume.set()
        # the seat ends reserved (or released) exactly once, whoever finished the move
        assert await _repaired(db, ledger) == ((1, 1) if op == "reserve" else (0, 0))
        if op == "release" and stall_at == 1:
            assert outcome == [True]

    run_virtual(main)


@pytest.mark.parametrize("op", ["reserve", "release"])
@pytest.mark.parametrize("stall_at", range(1, 4))
@pytest.mark.parametrize("reconcile_crash_at", range(1, 5))
def test_a_writer_waking_while_reconcile_died_half_way_still_leaves_one_move(
    op: str, stall_at: int, reconcile_crash_at: int
) -> None:
    """The writer sleeps, reconcile dies part-way through finishing its move, the writer wakes
    and goes on, and the next reconcile still ends with the counter equal to the seats held."""

    async def main() -> None:
        db, ledger, faults, program = await _setup()
        if op == "release":
            assert await ledger.reserve(program, purchase_id="p", ref="r", at=0.0)

        async def writer() -> None:
            if op == "reserve":
                await ledger.reserve(program, purchase_id="p", ref="r", at=0.0)
            else:
                await ledger.release(PROG, "r")

        faults.arm(stall_at=stall_at)
        async with anyio.create_task_group() as tg:
            tg.start_soon(writer)
            await faults.stalled.wait()
            faults.arm(crash_at=reconcile_crash_at)
            with suppress(Crash):  # (a short finish may end before the crash point)
                await ledger.finish_stale_moves(math.inf)
            faults.arm()
            faults.resume.set()
        assert await _repaired(db, ledger) == ((1, 1) if op == "reserve" else (0, 0))

    run_virtual(main)
