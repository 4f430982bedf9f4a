"""The store port and the conditional transitions that make the reference engine correct."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from reference_impl.store import AsyncDatabase, open_database
from tests.enginehelpers import run_virtual


def test_every_call_goes_through_the_observer() -> None:
    calls: list[tuple[str, str]] = []
    results: list[str] = []

    class Observer:
        async def before(self, collection: str, op: str, args: Any, kwargs: Any) -> None:
            calls.append((collection, op))

        def after(self, collection: str, op: str, args: Any, kwargs: Any, result: Any) -> None:
            results.append(op)

    async def main() -> None:
        db = AsyncDatabase(open_database().sync, Observer())
        await db.purchases.insert_one({"_id": "p1", "status": "pending"})
        assert (await db.purchases.find_one({"_id": "p1"}))["status"] == "pending"
        docs = await db["purchases"].find({"status": "pending"}).to_list()
        assert [d["_id"] for d in docs] == ["p1"]

    run_virtual(main)
    assert calls == [("purchases", "insert_one"), ("purchases", "find_one"), ("purchases", "find")]
    assert results == ["insert_one", "find_one", "find"]


def test_conditional_transition_has_exactly_one_winner() -> None:
    async def main() -> list[bool]:
        db = open_database()
        await db.purchases.insert_one({"_id": "p1", "status": "pending"})
        wins: list[bool] = []

        async def complete() -> None:
            doc = await db.purchases.find_one_and_update(
                {"_id": "p1", "status": "pending"},
                {"$set": {"status": "completed"}},
                return_document=ReturnDocument.BEFORE,
            )
            wins.append(doc is not None)

        async with anyio.create_task_group() as tg:
            for _ in range(10):
                tg.start_soon(complete)
        return wins

    wins = run_virtual(main)
    assert sorted(wins) == [False] * 9 + [True]


def test_primary_key_fast_path_gives_the_same_answers_as_a_scan() -> None:
    import mongomock

    from reference_impl.embedded_store import _scan, client

    db = client()["t"]
    plain = mongomock.MongoClient()["t"]
    for coll in (db.c, plain.c):
        coll.insert_many(
            [{"_id": f"p{i}", "n": i, "status": "pending" if i % 2 else "done"} for i in range(50)]
        )
    filters = [
        {"_id": "p3"},
        {"_id": "p3", "status": "pending"},
        {"_id": "p4", "status": "pending"},
        {"_id": "missing"},
        {"_id": {"$in": ["p1", "p2"]}},
        {"status": "done", "n": {"$lt": 10}},
    ]
    for flt in filters:
        fast = list(db.c.find(flt))
        assert fast == list(plain.c.find(flt)) == list(_scan(db.c, flt)), flt
    assert (
        db.c.update_one(
            {"_id": "p3", "status": "pending"}, {"$set": {"status": "x"}}
        ).modified_count
        == 1
    )
    assert (
        db.c.update_one(
            {"_id": "p3", "status": "pending"}, {"$set": {"status": "y"}}
        ).modified_count
        == 0
    )
    with pytest.raises(DuplicateKeyError):
        db.c.insert_one({"_id": "p3"})
