"""The fast paths added for speed answer exactly as what they replace: the embedded store's
fast paths as mongomock as shipped, pretty JSON as `json.dumps(indent=2)`, history lines as
`json.dumps`, and the SDK still logs when asked.
"""

from __future__ import annotations

import copy
import datetime
import json
import logging
import math
import random
import re
import urllib.parse
from decimal import Decimal
from pathlib import Path
from typing import Any

import mongomock
import pytest
import stripe._encode
import stripe._util
from hypothesis import given, settings
from hypothesis import strategies as st
from mongomock.filtering import filter_applies
from pymongo import ReturnDocument

from reference_impl.embedded_match import matches
from reference_impl.embedded_store import client, peek, shipped
from simulator.fake_stripe import forms, pretty_json
from simulator.fake_stripe.http_client import quiet_sdk_logging
from simulator.history import History

# ---- the fast paths answer as before


def _docs(rng: random.Random, n: int) -> list[dict[str, Any]]:
    values: list[Any] = [
        "pending",
        "completed",
        None,
        True,
        False,
        0,
        1,
        2.5,
        -1,
        float("nan"),
        [],
        ["pending"],
        [None],
        {"a": 1},
        "",
        "x y",
    ]
    docs = []
    for i in range(n):
        doc: dict[str, Any] = {"_id": f"d{i}" if i % 7 else i}
        for field in ("status", "receipt_sent", "n", "session"):
            if rng.random() < 0.8:
                doc[field] = rng.choice(values)
        docs.append(doc)
    return docs


FILTERS: list[dict[str, Any]] = [
    {"status": "completed"},
    {"status": None},
    {"status": "completed", "receipt_sent": {"$ne": True}},
    {"receipt_sent": {"$ne": True}, "status": "completed"},
    {"receipt_sent": {"$ne": False}},
    {"status": {"$ne": None}},
    {"status": {"$ne": "pending"}, "n": {"$lt": 2}},
    {"n": {"$lt": 1.5}, "status": "pending", "session": None},
    {"n": {"$gte": 0, "$lte": 2}},
    {"n": {"$gt": 0}, "status": {"$in": ["pending", "completed"]}},
    {"n": {"$lt": float("nan")}},
    {"status": "pending", "$or": [{"n": 1}, {"n": 2.5}]},
    {"status.0": "pending"},
    {"_id": "d3", "status": "completed"},
    {"_id": 7},
    {"_id": {"$in": ["d1", "d2"]}, "status": None},
    {},
]


#: exclusions of top-level fields take the fast path; the others go to mongomock
PROJECTIONS: list[Any] = [
    None,
    {"status": 1},
    {"seats": 0},
    {"seats": 0, "meta": False},
    {"missing": 0},
    {"_id": 0},
    {"meta.k": 0},
    {"seats": 0, "status": 1},
    ["status"],
]


def _twins(seed: int, n: int, name: str) -> tuple[random.Random, Any, Any]:
    """The same `n` generated documents in a fast collection and in mongomock as shipped."""
    rng = random.Random(seed)
    docs = _docs(rng, n)
    fast = client()["t"][name]
    fast.insert_many([dict(d) for d in docs])
    with shipped():
        plain = mongomock.MongoClient()["t"][name]
        plain.insert_many([dict(d) for d in docs])
    return rng, fast, plain


def test_fast_scans_find_what_mongomock_finds() -> None:
    _, fast, plain = _twins(7, 400, "c")
    for flt in FILTERS:
        got = list(fast.find(flt))
        with shipped():
            expected = list(plain.find(flt))
        assert _same(got, expected), flt
        for projection in PROJECTIONS:  # find_one: the first the fast path finds, as the cursor
            mine = _outcome(lambda: fast.find_one(flt, projection))  # noqa: B023
            with shipped():
                theirs = _outcome(lambda: plain.find_one(flt, projection))  # noqa: B023
            assert _same(mine, theirs), (flt, projection)


def test_finds_of_listed_keys_sorted_by_id_match_mongomock() -> None:
    rng, fast, plain = _twins(5, 200, "k")
    for _ in range(60):
        keys = [f"d{rng.randrange(260)}" for _ in range(rng.randrange(12))]
        flt: dict[str, Any] = {"_id": {"$in": keys}}
        if rng.random() < 0.5:
            flt["status"] = rng.choice(["pending", None, {"$ne": "completed"}])
        sort = rng.choice([[("_id", 1)], [("_id", -1)], [("_id", 1), ("status", -1)], None])
        projection = rng.choice([None, {"status": 1}, {"n": 0}])
        got = list(fast.find(flt, projection, sort=sort))
        with shipped():
            expected = list(plain.find(flt, projection, sort=sort))
        assert _same(got, expected), (flt, sort, projection)


def test_finds_with_a_limit_match_mongomock() -> None:
    rng, fast, plain = _twins(13, 300, "l")
    for flt in FILTERS:
        for skip, limit in ((0, 1), (0, 7), (5, 7), (0, -3), (290, 20), (0, 0), (400, 5)):
            sort = rng.choice([None, None, [("n", 1)], [("_id", -1)]])
            got = list(fast.find(flt, skip=skip, limit=limit, sort=sort))
            with shipped():
                expected = list(plain.find(flt, skip=skip, limit=limit, sort=sort))
            assert _same(got, expected), (flt, skip, limit, sort)


def test_a_find_with_a_limit_copies_only_its_page(monkeypatch: pytest.MonkeyPatch) -> None:
    """An email outage leaves thousands of receipts owed: a sweep that reads them a page at a
    time must hold a page, not every match (mongomock as shipped copies them all, then cuts)."""
    fast = client()["t"].owed
    fast.insert_many([{"_id": f"p{i:04d}", "receipt": "owed"} for i in range(500)])
    copies = 0
    copy_only_fields = mongomock.collection.Collection._copy_only_fields

    def counted(self: Any, *args: Any) -> Any:
        nonlocal copies
        copies += 1
        return copy_only_fields(self, *args)

    monkeypatch.setattr(mongomock.collection.Collection, "_copy_only_fields", counted)
    page = list(fast.find({"receipt": "owed"}, limit=10))
    assert [d["_id"] for d in page] == [f"p{i:04d}" for i in range(10)]
    assert copies == 10
    with shipped():
        copies = 0
        assert len(list(fast.find({"receipt": "owed"}, limit=10))) == 10
        assert copies == 500  # what the fast path saves


def test_fast_reads_and_writes_match_mongomock_step_by_step() -> None:
    rng = random.Random(11)
    fast = client()["t"].p
    with shipped():
        plain = mongomock.MongoClient()["t"].p

    def both(op: str, *args: Any, **kwargs: Any) -> None:
        got = _outcome(lambda: getattr(fast, op)(*args, **kwargs))
        with shipped():
            expected = _outcome(lambda: getattr(plain, op)(*args, **kwargs))
            assert _same(list(fast.find({})), list(plain.find({}))), (op, args, kwargs)
        assert _same(got, expected), (op, args, kwargs)

    for i in range(60):
        doc = {
            "_id": f"p{i}",
            "status": "pending",
            "seats": [{"ref": f"r{i}", "at": 1.0}],
            "meta": {"k": [1, {"deep": i}]},
        }
        both("insert_one", doc)
    for _ in range(800):
        key = f"p{rng.randrange(70)}"
        status = rng.choice(["pending", "completed", "failed"])
        kind = rng.randrange(10)
        value = rng.choice(
            [0, 1, 2.5, float("nan"), True, "s", None, [1, {"a": [2]}], {"b": 1}, "\ud800", 2**64]
        )
        if kind == 0:
            both("find_one", {"_id": key})
        elif kind == 1:
            both("find_one", {"_id": key, "status": status})
        elif kind == 2:
            both(
                "update_one",
                {"_id": key, "status": "pending"},
                {"$set": {"status": status, "meta.k.1.deep": -1}},
            )
        elif kind == 3:
            both(
                "find_one_and_update",
                {"_id": key},
                {"$push": {"seats": {"ref": "x"}}},
                return_document=rng.choice([ReturnDocument.BEFORE, ReturnDocument.AFTER]),
            )
        elif kind == 4:
            both(
                "update_one",
                {"_id": key, "seats.ref": "x"},
                {"$pull": {"seats": {"ref": "x"}}, "$inc": {"n": 1}},
            )
        elif kind == 5:
            projection = rng.choice(PROJECTIONS)
            if rng.random() < 0.5:
                both("find_one", {"_id": key}, projection=projection)
            else:
                both("find_one", {"_id": key, "status": status}, projection)
        elif kind == 6:
            both("update_one", {"_id": key}, {"$set": {"v": value, "status": status}})
        elif kind == 7:
            both(
                "update_one",
                {"_id": key, "status": status},
                {"$inc": {"n": rng.choice([0, 1, -1, 0.5])}, "$unset": {"v": ""}},
            )
        elif kind == 8:
            both(
                "find_one_and_update",
                {"_id": key, "v": {"$ne": None}},
                {"$set": {"w": value}, "$inc": {"v": 1}},
                return_document=ReturnDocument.AFTER,
            )
        else:
            both("update_one", {"_id": key}, {"$unset": {"w": 1, "missing": 1}})
    assert _same(list(fast.find({})), list(plain.find({})))


_SCALAR_VALUES = st.sampled_from(
    ["pending", "completed", "", None, True, False, 0, 1, -1, 2.5, 0.0, -0.0, 2**53, math.nan]
)
_STORED = st.one_of(
    _SCALAR_VALUES,
    st.lists(_SCALAR_VALUES, max_size=3),
    st.dictionaries(st.sampled_from(["a", "b"]), _SCALAR_VALUES, max_size=2),
)
_FIELDS = st.sampled_from(["_id", "status", "n", "v", "missing", "v.a", "$or"])
_CONDITIONS = st.one_of(
    _SCALAR_VALUES,
    st.lists(_SCALAR_VALUES, max_size=2),
    st.dictionaries(
        st.sampled_from(["$ne", "$exists", "$in", "$lt", "$lte", "$gt", "$gte", "$nin", "$size"]),
        st.one_of(_SCALAR_VALUES, st.lists(_SCALAR_VALUES, max_size=3)),
        min_size=1,
        max_size=2,
    ),
)


@settings(max_examples=1500, deadline=None)
@given(
    st.dictionaries(st.sampled_from(["status", "n", "v"]), _STORED, max_size=3),
    st.dictionaries(_FIELDS, _CONDITIONS, max_size=3),
)
def test_the_fast_matcher_answers_as_mongomock_or_not_at_all(
    fields: dict[str, Any], flt: dict[str, Any]
) -> None:
    doc = {"_id": "d1", **fields}
    found = matches(flt, doc)
    if found is None:
        return  # mongomock decides
    with shipped():
        try:
            expected = filter_applies(flt, doc)
        except Exception:  # mongomock refuses the filter: the fast matcher must not have decided
            pytest.fail(f"decided {found} where mongomock raises: {flt} on {doc}")
    assert found == expected, (flt, doc)


def test_the_fast_matcher_decides_the_engines_filters() -> None:
    doc = {"_id": "p1", "status": "pending", "stripe_session_id": None, "n": 2}
    assert matches({"_id": "p1", "status": "pending", "stripe_session_id": None}, doc) is True
    assert matches({"_id": "p1", "status": "completed"}, doc) is False
    assert matches({"n": {"$lt": 3}, "seat_ref": {"$ne": "r1"}}, doc) is True
    assert matches({"status": {"$in": ["completed", "pending"]}}, doc) is True
    assert matches({"seats.ref": "x"}, doc) is None  # dotted: mongomock's
    assert matches({"status": ["pending"]}, doc) is None  # an array: mongomock's


_INSERTS: list[Any] = [
    {"_id": "a", "status": "pending", "seats": [{"ref": "r", "at": 1.0}], "n": 2**62},
    {"_id": "a", "other": 1},  # duplicate key
    {"_id": "b", "meta": {"k": [1, {"deep": None}], "t": True}, "x": float("nan")},
    {"_id": "c", "$bad": 1},
    {"_id": "d", "inner": {"$ok": 1, "a.b": 2}},
    {"_id": "e", "in\0ner": 1},
    {"_id": "f", "deep": [{"k\0": 1}]},
    {"_id": "g", "s": "\ud800"},  # BSON cannot encode a lone surrogate
    {"_id": "h", "big": 2**64},
    {"_id": "i", "t": (1, 2), "when": datetime.datetime(2024, 1, 2, 3, 4, 5, 678901)},
    {"_id": "j", 1: "int key"},
    {"_id": 7, "n": 1},
    {"_id": 7, "n": 2},
    {"_id": {"x": 1}},
    {"_id": "", "empty": ""},
    {"_id": "k", "a.b": {"c": [[], {}]}},
    {"_id": "b"},  # duplicate of a fast insert
]


def test_fast_inserts_match_mongomock() -> None:
    """Same result or error, same stored documents, same caller's dict, and a stored copy."""
    fast = client()["t"].i
    with shipped():
        plain = mongomock.MongoClient()["t"].i
    for doc in _INSERTS:
        mine, theirs = copy.deepcopy(doc), copy.deepcopy(doc)
        got = _outcome(lambda: fast.insert_one(mine))  # noqa: B023 - called at once
        with shipped():
            expected = _outcome(lambda: plain.insert_one(theirs))  # noqa: B023
            stored = list(plain.find({}))
        assert got == expected, doc
        assert _same(list(fast.find({})), stored), doc
        assert _same(mine, theirs), doc
        if type(doc["_id"]) is str and peek(fast, doc["_id"]) is not None:
            assert peek(fast, doc["_id"]) is not mine
    fresh = {"_id": "z", "tags": ["x"], "inner": {"n": 1}}
    fast.insert_one(fresh)
    fresh["tags"].append("y")
    fresh["inner"]["n"] = 2
    assert peek(fast, "z") == {"_id": "z", "tags": ["x"], "inner": {"n": 1}}
    with pytest.raises(mongomock.DuplicateKeyError) as raised:
        fast.insert_one({"_id": "z"})
    assert raised.value.code == 11000 and str(raised.value) == "E11000 Duplicate Key Error"


def test_inserts_with_an_index_go_to_mongomock() -> None:
    fast = client()["t"].u
    fast.create_index("email", unique=True)
    fast.insert_one({"_id": "a", "email": "x"})
    with pytest.raises(mongomock.DuplicateKeyError):
        fast.insert_one({"_id": "b", "email": "x"})
    assert peek(fast, "b") is None


def test_results_are_copies_and_peek_is_the_stored_document() -> None:
    coll = client()["t"].q
    coll.insert_one({"_id": "a", "tags": ["x"], "inner": {"n": 1}})
    found = coll.find_one({"_id": "a"})
    found["tags"].append("y")
    found["inner"]["n"] = 2
    assert coll.find_one({"_id": "a"}) == {"_id": "a", "tags": ["x"], "inner": {"n": 1}}
    assert peek(coll, "a") == {"_id": "a", "tags": ["x"], "inner": {"n": 1}}
    assert peek(coll, "missing") is None


def _outcome(call: Any) -> Any:
    try:
        return _result(call())
    except Exception as exc:  # the same error, raised at the same point
        return f"{type(exc).__name__}: {exc}"


def _result(value: Any) -> Any:
    if hasattr(value, "inserted_id"):
        return value.inserted_id
    if hasattr(value, "raw_result"):  # the client's connection id differs, by design
        return {k: v for k, v in value.raw_result.items() if k != "connectionId"}
    return value


def _same(a: Any, b: Any) -> bool:
    """Equal, NaN included, and with the same types (1 is not True)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


# ---- JSON bytes: history lines, Stripe's indented bodies


def _json_value(rng: random.Random, depth: int = 0) -> Any:
    leaves: list[Any] = [
        None,
        True,
        False,
        0,
        -7,
        2**70,
        1.5,
        -0.0,
        1e-7,
        1e300,
        float("nan"),
        float("inf"),
        float("-inf"),
        "",
        "a b",
        'é\u2028"\\\n\x00',
        "日本",
    ]
    if depth > 3 or rng.random() < 0.4:
        return rng.choice(leaves)
    if rng.random() < 0.5:
        return [_json_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {
        rng.choice(["id", "é", "", "k"]) + str(i): _json_value(rng, depth + 1)
        for i in range(rng.randrange(4))
    }


def test_pretty_json_sorted_is_json_dumps_with_indent_1_sort_keys() -> None:
    """The run's final_state.json and ledgers.json rows (`run._dumps`)."""
    rng = random.Random(4)
    for _ in range(500):
        value = _json_value(rng)
        for indent in (1, 2):
            expected = json.dumps(value, indent=indent, sort_keys=True, default=str)
            assert pretty_json.dumps_sorted(value, indent=indent) == expected
    when = datetime.datetime(2024, 1, 2, 3, 4, 5)
    for odd in ({"b": when, "a": [Decimal("1.5"), True]}, {1: 2, "x": (1,)}, [{"z": 1, 2: 3}]):
        try:
            expected = json.dumps(odd, indent=1, sort_keys=True, default=str)
        except TypeError:  # mixed keys do not sort: json.dumps refuses, and so must this
            with pytest.raises(TypeError):
                pretty_json.dumps_sorted(odd)
        else:
            assert pretty_json.dumps_sorted(odd) == expected


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(_JSON)
def test_pretty_json_matches_json_dumps_on_generated_values(value: Any) -> None:
    assert pretty_json.dumps_sorted(value) == json.dumps(
        value, indent=1, sort_keys=True, default=str
    )


# ---- history lines and SDK logging


def test_history_lines_are_sorted_compact_json_that_reads_back_as_written(tmp_path: Path) -> None:
    """Keys sorted, no spaces, one line each; UTF-8 kept as UTF-8; what JSON cannot hold is
    written as `json.dumps(default=str)` would (an object) or as JSON's null (an infinity, which
    JSON has no word for); integers past 64 bits go to the standard library and stay exact."""

    class Clock:
        def elapsed(self) -> float:
            return 1.2345678

    history = History(tmp_path / "h.jsonl", Clock())  # type: ignore[arg-type]
    thing = object()
    fields = {"name": "é ü", "x": float("inf"), "n": [1, None], "obj": thing, "z": 1e-7}
    entry = history.record("t.kind", **fields)
    big = history.record("t.big", n=2**70, when=datetime.datetime(2024, 1, 2))
    history.close()
    first, second = (tmp_path / "h.jsonl").read_bytes().splitlines(keepends=True)
    obj = json.dumps(str(thing))
    assert first == (
        f'{{"n":[1,null],"name":"é ü","obj":{obj},"seq":0,"t":1.234568,"type":"t.kind",'
        '"x":null,"z":1e-7}\n'
    ).encode()
    assert json.loads(first) == {**entry, "obj": str(thing), "x": None}
    assert json.loads(second) == {**big, "when": "2024-01-02 00:00:00"}
    assert list(json.loads(second)) == sorted(json.loads(second))


def test_sdk_logging_still_logs_when_asked(caplog: pytest.LogCaptureFixture) -> None:
    quiet_sdk_logging()
    quiet_sdk_logging()  # idempotent
    with caplog.at_level(logging.DEBUG, logger="stripe"):
        stripe._util.log_debug("hello", body="a b")
    assert "message=hello" in caplog.text and "body='a b'" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="stripe"):
        stripe._util.log_info("quiet")
    assert caplog.text == ""


# ---- form bodies: the hand-rolled parser answers as the parse_qsl one it replaced


def _parse_form_as_before(text: str) -> Any:
    """forms.parse_form as it was (parse_qsl, then a copying `_listify`): the reference."""
    key_re = re.compile(r"([^\[\]]+)((?:\[[^\[\]]*\])*)")
    part_re = re.compile(r"\[([^\[\]]*)\]")

    def split_key(key: str) -> tuple[str, ...]:
        match = key_re.fullmatch(key)
        if match is None:
            return (key,)
        head, tail = match.groups()
        return (head, *part_re.findall(tail))

    def listify(node: dict[str, Any], *, free_form: bool = False) -> Any:
        converted = {
            k: listify(v, free_form=k == "metadata") if isinstance(v, dict) else v
            for k, v in node.items()
        }
        if not free_form and converted and all(k.isdigit() for k in converted):
            return [converted[k] for k in sorted(converted, key=int)]
        return converted

    root: dict[str, Any] = {}
    for key, value in urllib.parse.parse_qsl(text, keep_blank_values=True):
        parts = split_key(key)
        node = root
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        last = parts[-1] if parts[-1] != "" else str(len(node))
        node[last] = value
    return listify(root)


def _same_parse(text: str) -> None:
    """Equal values, and equal key order and types (repr), or the same exception."""
    try:
        expected = repr(_parse_form_as_before(text))
    except Exception as error:  # e.g. int() of a non-ASCII digit key
        with pytest.raises(type(error)):
            forms.parse_form(text)
        return
    assert repr(forms.parse_form(text)) == expected, text


_FORM_TEXT = st.text(alphabet="ab019[]=&%+ é²_-.:/", max_size=12)
_FORM_KEY = st.sampled_from(["metadata", "line_items", "0", "1", "10", "a b", "x[y]", "é", "="])
_FORM_LEAF = st.none() | st.booleans() | st.integers() | _FORM_TEXT
_FORM_VALUE = st.recursive(
    _FORM_LEAF,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(_FORM_KEY | _FORM_TEXT, children, max_size=3)
    ),
    max_leaves=12,
)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(_FORM_KEY | _FORM_TEXT, _FORM_VALUE, max_size=5))
def test_parse_form_matches_parse_qsl_on_sdk_encoded_params(params: dict[str, Any]) -> None:
    _same_parse(urllib.parse.urlencode(list(stripe._encode._api_encode(params))))


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet="ab0[]=&%+2F5Bé ;", max_size=30))
def test_parse_form_matches_parse_qsl_on_any_text(text: str) -> None:
    _same_parse(text)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "&",
        "a",
        "a=",
        "=",
        "=x",
        "a[]=",
        "a[]=1&a[]=2",
        "a%5B%5D=1&a%5B%5D=2",
        "a=%41%zz%",
        "a+b=c+d%2B",
        "a=1&&b=2",
        "a=1&a[b]=2",
        "a[b]=2&a=1",
        "a[1]=x&a[0]=y&a[01]=z",
        "metadata[0]=x&metadata[1]=y",
        "m[metadata][0]=x&m[x][0]=y",
        "0=a&1=b",
        "a[%C2%B2]=1",
        "a[%D9%A3]=1",
        "a%5Bb=1",
        "a]b[=1",
        "a[b]c=1",
        "a=%E9&b=%C3%A9",
        "a;b=1",
    ],
)
def test_parse_form_matches_parse_qsl_on_odd_bodies(text: str) -> None:
    _same_parse(text)


def test_equality_index_answers_as_a_scan_while_documents_change() -> None:
    """Lookups by a field's string value (served from `embedded_index`) between every kind of
    write: inserts, updates pinned to an `_id` that move the value, updates by other filters,
    upserts, deletes (which drop the indexes), arrays holding the value."""
    rng = random.Random(5)
    fast = client()["t"].idx
    with shipped():
        plain = mongomock.MongoClient()["t"].idx

    def both(op: str, *args: Any, **kwargs: Any) -> None:
        got = _outcome(lambda: _listed(getattr(fast, op)(*args, **kwargs)))
        with shipped():
            expected = _outcome(lambda: _listed(getattr(plain, op)(*args, **kwargs)))
        assert _same(got, expected), (op, args, kwargs)

    values: list[Any] = ["s1", "s2", "s3", None, 1, ["s1", "s3"], ["s2"], {"k": "s1"}, ""]
    for i in range(40):
        both("insert_one", {"_id": f"p{i}", "session": rng.choice(values), "status": "pending"})
    for step in range(700):
        key = f"p{rng.randrange(50)}"
        value = rng.choice(values)
        wanted = rng.choice(["s1", "s2", "s3", ""])
        kind = rng.randrange(9)
        if kind == 0:
            both("insert_one", {"_id": f"n{step}", "session": value, "status": "pending"})
        elif kind == 1:
            both("update_one", {"_id": key}, {"$set": {"session": value}})
        elif kind == 2:
            both(
                "find_one_and_update",
                {"_id": key, "status": "pending"},
                {"$set": {"status": "completed", "session": value}},
            )
        elif kind == 3:
            both("update_many", {"status": "completed"}, {"$set": {"session": value}})
        elif kind == 4 and rng.random() < 0.2:
            both("delete_one", {"session": wanted})
        elif kind == 5:
            both("update_one", {"_id": key}, {"$push": {"session": wanted}})
        elif kind == 6:
            both("update_one", {"session": wanted}, {"$set": {"x": 1}}, upsert=True)
        elif kind == 7:
            both("find_one", {"session": wanted, "status": "pending"})
        else:
            both("find", {"session": wanted})
        if step % 25 == 0:
            both("find", {"session": wanted}, sort=[("status", 1)])
    both("find", {})


def _listed(result: Any) -> Any:
    return list(result) if isinstance(result, mongomock.collection.Cursor) else result
