"""The embedded store with documents on disk (`embedded_spill`) answers as mongomock as shipped.

Every collection here keeps at most a handful of documents in memory (0, 1 or 3), so nearly
every operation reads documents back from disk and sends others there: interleaved inserts,
updates in place, conditional transitions, finds, scans, counts, deletes, unique indexes, TTL
indexes and the equality indexes, each compared with plain mongomock step by step.
"""

from __future__ import annotations

import datetime
import random
from collections.abc import Callable
from typing import Any

import mongomock
import pytest
from bson import ObjectId
from pymongo import ReturnDocument

from reference_impl import embedded_store
from reference_impl.embedded_spill import SpilledDocuments
from reference_impl.embedded_store import client, peek, shipped
from tests import test_fast_paths as fast_paths
from tests.test_fast_paths import _outcome, _same

HOT = [0, 1, 3]

#: the fast paths' own differential tests, each rerun with documents on disk
FAST_PATH_TESTS: list[Callable[[], None]] = [
    fast_paths.test_fast_scans_find_what_mongomock_finds,
    fast_paths.test_finds_of_listed_keys_sorted_by_id_match_mongomock,
    fast_paths.test_fast_reads_and_writes_match_mongomock_step_by_step,
    fast_paths.test_fast_inserts_match_mongomock,
    fast_paths.test_equality_index_answers_as_a_scan_while_documents_change,
    fast_paths.test_finds_with_a_limit_match_mongomock,
]


@pytest.mark.parametrize("hot", HOT)
@pytest.mark.parametrize("test", FAST_PATH_TESTS, ids=lambda t: t.__name__)
def test_fast_path_differentials_hold_with_documents_on_disk(
    monkeypatch: pytest.MonkeyPatch, hot: int, test: Callable[[], None]
) -> None:
    monkeypatch.setattr(fast_paths, "client", lambda: client(hot_documents=hot))
    test()


def _documents(collection: Any) -> SpilledDocuments:
    docs = collection._store._documents
    assert type(docs) is SpilledDocuments
    return docs


class Differs(AssertionError):
    """The spilling store answered otherwise than mongomock as shipped."""


class Pair:
    """The same calls on a spilling collection and on plain mongomock, compared each time."""

    def __init__(self, hot: int, name: str = "c") -> None:
        self.hot = hot
        self.fast = client(hot_documents=hot)["t"][name]
        with shipped():
            self.plain = mongomock.MongoClient()["t"][name]

    def both(self, op: str, *args: Any, **kwargs: Any) -> Any:
        got = _outcome(lambda: _listed(getattr(self.fast, op)(*args, **kwargs)))
        with shipped():
            expected = _outcome(lambda: _listed(getattr(self.plain, op)(*args, **kwargs)))
        if not _same(got, expected):
            raise Differs(op, args, kwargs, got, expected)
        docs = _documents(self.fast)
        assert len(docs._lru) <= max(self.hot, 0), "more in memory than allowed"
        return got

    def same_contents(self) -> None:
        got = list(self.fast.find({}))
        with shipped():
            expected = list(self.plain.find({}))
        assert _same(got, expected)


def _listed(result: Any) -> Any:
    return list(result) if isinstance(result, mongomock.collection.Cursor) else result


@pytest.mark.parametrize("hot", HOT)
def test_interleaved_writes_and_reads_match_mongomock(hot: int) -> None:
    rng = random.Random(hot + 17)
    pair = Pair(hot)
    statuses = ["pending", "completed", "failed"]
    sessions = [f"cs_{n}" for n in range(12)]
    for step in range(900):
        key = f"p{rng.randrange(60)}"
        status = rng.choice(statuses)
        session = rng.choice(sessions)
        kind = rng.randrange(16)
        if kind <= 2:
            pair.both(
                "insert_one",
                {"_id": key, "status": "pending", "session": session, "n": step, "tags": []},
            )
        elif kind == 3:
            pair.both("update_one", {"_id": key}, {"$set": {"status": status}, "$inc": {"n": 1}})
        elif kind == 4:
            pair.both(
                "find_one_and_update",
                {"_id": key, "status": "pending"},
                {"$set": {"status": status, "session": session}},
                return_document=rng.choice([ReturnDocument.BEFORE, ReturnDocument.AFTER]),
            )
        elif kind == 5:
            pair.both("find_one", {"session": session})
        elif kind == 6:
            pair.both("find", {"status": status, "n": {"$gte": rng.randrange(900)}})
        elif kind == 7:
            pair.both("find", {"_id": {"$in": [key, f"p{rng.randrange(60)}"]}}, sort=[("_id", 1)])
        elif kind == 8:
            pair.both("update_many", {"status": status}, {"$push": {"tags": step}})
        elif kind == 9:
            pair.both("delete_one", {"_id": key})
        elif kind == 10 and rng.random() < 0.3:
            pair.both("delete_many", {"session": session})
        elif kind == 11:
            pair.both("count_documents", {"status": status})
        elif kind == 12:
            pair.both("replace_one", {"_id": key}, {"status": "replaced", "session": session})
        elif kind == 13:
            pair.both("update_one", {"_id": key}, {"$set": {"x": step}}, upsert=True)
        elif kind == 14:
            pair.both("find", {}, {"_id": 1, "status": 1})
        else:
            pair.both("find_one", {"_id": key}, {"tags": 0})
        if step % 100 == 0:
            pair.same_contents()
    pair.same_contents()
    assert len(list(pair.fast.find({}))) == pair.fast.count_documents({})


@pytest.mark.parametrize("hot", HOT)
def test_unique_sparse_index_refuses_as_mongomock_does(hot: int) -> None:
    """The seed engine's order numbers: a unique sparse index, checked by mongomock's scans,
    must see the documents on disk."""
    rng = random.Random(hot)
    pair = Pair(hot, "orders")
    pair.both("create_index", "order_number", unique=True, sparse=True)
    for step in range(300):
        key = f"o{rng.randrange(40)}"
        number = rng.choice([None, *range(25)])
        kind = rng.randrange(6)
        doc: dict[str, Any] = {"_id": key, "status": "pending"}
        if number is not None:
            doc["order_number"] = number
        if kind <= 1:
            pair.both("insert_one", doc)
        elif kind == 2:
            pair.both("update_one", {"_id": key}, {"$set": {"order_number": number}})
        elif kind == 3:
            pair.both("delete_one", {"_id": key})
        elif kind == 4:
            pair.both("find_one", {"order_number": number})
        else:
            pair.both("update_many", {"status": "pending"}, {"$set": {"seen": step}})
    pair.same_contents()
    pair.both("create_index", "status", unique=True)  # the documents on disk refuse it


@pytest.mark.parametrize("hot", HOT)
def test_keys_of_every_kind_and_values_pickle_keeps(hot: int) -> None:
    """ObjectId keys leave memory (their bytes compare as they do); int and dict keys stay;
    datetimes, NaN, tuples and big integers read back as they were stored."""
    pair = Pair(hot)
    when = datetime.datetime(2024, 5, 6, 7, 8, 9, 123000)
    for n in range(8):
        pair.both("insert_one", {"_id": ObjectId(f"{n:024x}"), "at": when, "n": n})
        pair.both("insert_one", {"_id": n, "x": float("nan"), "t": n})
        pair.both("insert_one", {"_id": {"k": n}, "big": 2**62 + n})
        pair.both("insert_one", {"_id": f"s{n}", "seats": [{"at": when}], "n": 2**63 - 1})
    for n in range(8):
        pair.both("find_one", {"_id": ObjectId(f"{n:024x}")})
        pair.both("update_one", {"_id": n}, {"$set": {"t": [n, "x"]}})
        pair.both("find_one", {"_id": {"k": n}})
        pair.both("update_one", {"_id": f"s{n}"}, {"$push": {"seats": {"at": when}}})
    pair.both("find", {"at": {"$gte": when}})
    pair.same_contents()


@pytest.mark.parametrize("hot", HOT)
def test_ttl_index_expires_documents_on_disk(hot: int) -> None:
    pair = Pair(hot, "ttl")
    old = datetime.datetime(2000, 1, 1)
    new = datetime.datetime(2999, 1, 1)
    for n in range(20):
        pair.both("insert_one", {"_id": f"d{n}", "at": old if n % 3 == 0 else new, "s": "x"})
    pair.both("create_index", "at", expireAfterSeconds=60)
    pair.both("find_one", {"_id": "d3"})
    pair.both("find_one", {"_id": "d4"})
    pair.both("find", {"s": "x"})
    pair.both("update_one", {"_id": "d5"}, {"$set": {"s": "y"}})
    pair.both("count_documents", {})
    pair.same_contents()


def test_documents_leave_memory_and_read_back() -> None:
    """With room for 4, 600 purchases live mostly on disk; lookups by key and by an indexed
    value find them; scans that only read leave them there; the final snapshot's reads (ids,
    then one at a time) see every document in insertion order."""
    coll = client(hot_documents=4)["t"].purchases
    docs = _documents(coll)
    for n in range(600):
        coll.insert_one({"_id": f"p{n:03d}", "stripe_session_id": f"cs_{n}", "status": "pending"})
    assert len(docs._lru) <= 4 and docs._cold >= 596
    assert coll.find_one({"stripe_session_id": "cs_7"})["_id"] == "p007"  # built from disk
    assert coll.find_one({"stripe_session_id": "cs_599"})["_id"] == "p599"
    assert coll.update_one({"_id": "p008"}, {"$set": {"status": "completed"}}).modified_count == 1
    assert [d["_id"] for d in coll.find({"status": "completed"})] == ["p008"]
    ids = [d["_id"] for d in coll.find({}, {"_id": 1})]
    assert ids == [f"p{n:03d}" for n in range(600)]
    assert len(docs._hot) <= 4 + 1, "a read-only scan brought documents back into memory"
    assert peek(coll, "p100") == {"_id": "p100", "stripe_session_id": "cs_100", "status": "pending"}
    assert "p100" not in docs._hot, "peek only looks"
    assert [coll.find_one({"_id": i})["_id"] for i in ids[:3]] == ids[:3]
    assert list(docs) == ids and len(docs) == 600


def _writes_get_copies(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bug: a write is handed a copy of a document on disk, not the stored one, so what it
    changes in place is lost."""
    monkeypatch.setattr(SpilledDocuments, "_bring_back", lambda self, key, seq, doc: doc)


def _evicts_inside_operations(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bug: a document brought back for a write may leave memory again before the write ends."""
    bring_back = SpilledDocuments._bring_back

    def and_settle(self: SpilledDocuments, key: Any, seq: int, doc: Any) -> Any:
        doc = bring_back(self, key, seq, doc)
        self.settle()
        return doc

    monkeypatch.setattr(SpilledDocuments, "_bring_back", and_settle)


@pytest.mark.parametrize("bug", [_writes_get_copies, _evicts_inside_operations])
def test_the_differential_tests_catch_a_broken_eviction(
    monkeypatch: pytest.MonkeyPatch, bug: Callable[[pytest.MonkeyPatch], None]
) -> None:
    embedded_store.uninstall()
    bug(monkeypatch)
    embedded_store.install()
    try:
        with pytest.raises(Differs):
            test_interleaved_writes_and_reads_match_mongomock(0)
    finally:
        monkeypatch.undo()
        embedded_store.uninstall()
        embedded_store.install()


@pytest.mark.parametrize("hot", HOT)
def test_collections_are_listed_dropped_and_renamed_as_mongomock_does(hot: int) -> None:
    fast = client(hot_documents=hot)["t"]
    with shipped():
        plain = mongomock.MongoClient()["t"]

    def both(call: Callable[[Any], Any]) -> None:
        got = _outcome(lambda: call(fast))
        with shipped():
            expected = _outcome(lambda: call(plain))
        assert _same(got, expected), (got, expected)

    for name in ("a", "b", "c"):
        for n in range(6):
            both(lambda db, name=name, n=n: db[name].insert_one({"_id": f"{name}{n}"}).inserted_id)
    both(lambda db: sorted(db.list_collection_names()))
    both(lambda db: db.create_collection("empty").name)
    both(lambda db: db["a"].drop())
    both(lambda db: (list(db["a"].find({})), db["a"].count_documents({})))
    both(lambda db: db["a"].insert_one({"_id": "again"}).inserted_id)
    both(lambda db: db["b"].rename("renamed") and None)
    both(lambda db: (list(db["renamed"].find({})), list(db["b"].find({}))))
    both(lambda db: db.drop_collection("c"))
    both(lambda db: sorted(db.list_collection_names()))
    both(lambda db: db["renamed"].find_one({"_id": "b5"}))


@pytest.mark.parametrize("engine", ["reference", "seed"])
def test_a_run_with_its_documents_on_disk_has_the_same_history(
    monkeypatch: pytest.MonkeyPatch, engine: str
) -> None:
    """A whole simulation whose store writes every document to disk after each write (the
    seed engine's unique index included) records the same history and ends in the same state."""
    from simulator.bench_scenarios import purchases_scenario
    from simulator.run import simulate

    scenario = purchases_scenario(60)
    expected = simulate(scenario, 3, engine)
    clients: list[Any] = []
    monkeypatch.setattr(
        embedded_store, "client", lambda: clients.append(client(hot_documents=0)) or clients[-1]
    )
    got = simulate(scenario, 3, engine)
    purchases = clients[0]._store[f"paysim_{3}"]["purchases"]._documents
    assert purchases._cold == len(purchases) > 50  # every one of them on disk at the end
    assert got.history_sha256 == expected.history_sha256
    assert got.final_state == expected.final_state
    assert got.ledgers == expected.ledgers
