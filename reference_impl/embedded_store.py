"""The embedded store: mongomock, with the fast paths a long simulation needs.

mongomock answers every query by scanning the whole collection and copies documents with
generic recursive helpers, so long simulations slow down quadratically and spend much of their
time copying. Each fast path below gives mongomock's own answer at a lower cost; anything it does
not recognise goes to mongomock unchanged (tests/test_store.py and tests/test_bench.py compare
them with mongomock as shipped, see `shipped`):

- primary key: a filter with a plain `_id` value reads that one document and applies the rest of
  the filter to it, as MongoDB's primary index does; a `find` of listed keys sorted by `_id`
  reads just those;
- `find_one` skips the cursor machinery (the first document the filter's fast path finds, as the
  cursor would; no sort, no projection or one that only leaves out top-level fields);
- a filter whose first condition is string equality on a field (`{"stripe_session_id": s}`)
  takes its candidates from an equality index (`embedded_index`), kept up to date by the writes;
- scans first drop, by plain dict lookups, documents that a leading run of simple conditions
  (`{f: "s"}`, `{f: None}`, `{f: {"$ne": v}}`, `{f: {"$lt": n}}`, ...) already rules out, and
  give only the others to mongomock's matcher, in the same order;
- an insert of a JSON-like document with a string `_id` into a collection without other indexes
  stores the same copy without mongomock's generic datetime patching and locked store access;
- `$set`/`$unset`/`$inc` of top-level fields of one document by `_id` is applied field by field,
  without mongomock's deep snapshot of the whole document; a `find_one_and_update` of that kind
  (a conditional transition) is one lookup, one match and one change, not two finds and an
  update;
- filters of top-level conditions on scalars are matched by `embedded_match`, which answers as
  mongomock's matcher does or leaves the document to it;
- a client's collections keep at most `hot_documents` documents each in memory and the others
  on disk (`embedded_spill`), so a long run's store does not grow with it: every write is one
  operation on a collection's documents (they leave memory only when no write is running, as
  the fast paths change stored documents in place), reads copy what is on disk, a scan of a
  collection with documents on disk reads them one at a time, and `peek` only looks;
- a `find` with a `limit` and no sort reads the documents up to the limit, not every match
  (mongomock lists them all, then cuts): a read in pages holds one page;
- copies of JSON-like documents (dicts, lists, scalars) are made by a tight loop instead of
  `copy.copy`/`copy.deepcopy` per value. One difference in kind: an object referenced twice in
  one document is copied twice (MongoDB, which stores BSON, has no shared references either).
"""

from __future__ import annotations

import copy
import itertools
import operator
import types
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mongomock
import mongomock.collection
from bson import ObjectId
from mongomock import DuplicateKeyError, helpers
from mongomock.collection import Collection, Cursor
from mongomock.filtering import filter_applies
from pymongo import ReturnDocument

from reference_impl import embedded_index, embedded_spill
from reference_impl.embedded_collections import ServerStore
from reference_impl.embedded_match import matches

_KEY_TYPES = (str, int, ObjectId)
#: `find` arguments whose value None is their default (no projection, no sort)
_DEFAULT_FIND_ARGS = frozenset({"projection", "sort"})
#: types `copy.copy` and `copy.deepcopy` return as they are
_ATOMIC = frozenset({str, int, float, bool, type(None), bytes})
_NUMBER = (int, float)
_MISSING: Any = object()

_shipped = {
    "_iter_documents": Collection._iter_documents,
    "_get_dataset": Collection._get_dataset,
    "find_one": Collection.find_one,
    "find_one_and_update": Collection.find_one_and_update,
    "_update": Collection._update,
    "_insert": Collection._insert,
    "_delete": Collection._delete,
    "_copy_field": mongomock.collection._copy_field,
    "copy": mongomock.collection.copy,
    "_compute_results": Cursor._compute_results,
}
_scan: Callable[[Collection, Any], Iterator[dict[str, Any]]] = _shipped["_iter_documents"]


def _plain_key(filter: Any) -> Any:
    """The `_id` a filter pins to one document, or None."""
    if isinstance(filter, Mapping):
        key = filter.get("_id")
        if isinstance(key, _KEY_TYPES) and not isinstance(key, bool):
            return key
    return None


def _applies(filter: Any, doc: dict[str, Any]) -> bool:
    """mongomock's `filter_applies`, answered by the fast matcher when it can (embedded_match)."""
    found = matches(filter, doc) if type(filter) is dict else None
    return filter_applies(filter, doc) if found is None else found


def _iter_documents(self: Collection, filter: Any) -> Iterator[dict[str, Any]]:
    key = _plain_key(filter)
    if key is not None:
        doc = _stored(self, key)
        return iter([doc] if doc is not None and _applies(filter, doc) else [])
    served = _served(self, filter)
    if served is not None:
        return iter(served)
    if embedded_spill.spills(self._store):  # documents on disk: one at a time
        self._store._remove_expired_documents()
        return self._store._documents.scan(lambda doc: _applies(filter, doc))
    prune = _pruners(filter) if isinstance(filter, dict) else []
    if not prune or self._store.is_empty:
        return _scan(self, filter)
    docs = list(self._store.documents)
    for narrow in prune:
        docs = narrow(docs)
    return (doc for doc in docs if _applies(filter, doc))


def _get_dataset(self: Collection, spec: Any, sort: Any, fields: Any, as_class: Any) -> Any:
    """A `find` of listed primary keys sorted by `_id` (`{"_id": {"$in": [...]}}`, `sort=[("_id",
    1)]`) reads those documents, not the collection: with `_id` first, the keys alone decide
    the order, so the answer is the scan's."""
    keys = _listed_keys(spec)
    direction = _id_order(sort)
    if keys is None or direction is None or self._store._ttl_indexes:
        return _shipped["_get_dataset"](self, spec, sort, fields, as_class)
    documents = self._store._documents
    found = [
        doc
        for key in sorted(set(keys), reverse=direction < 0)
        if (doc := documents.get(key)) is not None and _applies(spec, doc)
    ]
    return (self._copy_only_fields(doc, fields, as_class) for doc in found)


def _compute_results(self: Cursor, with_limit_and_skip: bool = False) -> Any:
    """mongomock's cursor results; with a limit and no sort, only the documents up to the limit
    (after the skip), in the order the scan finds them: the same answer, a page in memory."""
    limit = self._limit
    if (
        not with_limit_and_skip
        or not limit
        or self._sort
        or self._results
        or self.collection.codec_options.tz_aware
    ):
        return _shipped["_compute_results"](self, with_limit_and_skip)
    key = (self._factory, self._skip, limit)
    page = getattr(self, "_paysim_page", None)
    if page is None or page[0] != key:
        found = list(itertools.islice(self._factory(), self._skip, self._skip + abs(limit)))
        page = self._paysim_page = (key, found)
    return page[1]


def _listed_keys(spec: Any) -> list[str] | None:
    """The string keys of `{"_id": {"$in": [...]}, ...}`, or None."""
    if type(spec) is not dict:
        return None
    cond = spec.get("_id")
    if type(cond) is not dict or len(cond) != 1 or type(cond.get("$in")) is not list:
        return None
    keys = cond["$in"]
    return keys if all(type(k) is str for k in keys) else None


def _id_order(sort: Any) -> int | None:
    """1 or -1 when a sort's first key is `_id` (unique: it decides the order alone)."""
    if type(sort) not in (list, tuple) or not sort:
        return None
    first = sort[0]
    if type(first) not in (list, tuple) or len(first) != 2 or first[0] != "_id":
        return None
    direction = first[1]
    return direction if direction in (1, -1) and type(direction) is int else None


def _served(self: Collection, filter: Any) -> Iterable[dict[str, Any]] | None:
    """The scan's answer from an equality index (`embedded_index`), or None if it cannot."""
    served = embedded_index.servable(filter)
    store = self._store
    if served is None or store._ttl_indexes or store.indexes:
        return None  # (mongomock's unique checks query mid-write: they scan)
    field, value = served
    found = embedded_index.found(store, field, value)
    if type(found) is not list:  # a read from a spilling store's disk: as it goes
        return (doc for doc in found if _applies(filter, doc))
    return [doc for doc in found if _applies(filter, doc)]


def _written(self: Collection, keys: Any) -> None:
    """Tell the collection's indexes that the documents `keys` (one or a list) were written."""
    store = self._store
    indexes = embedded_index.of(store)
    if not indexes.fields:
        return
    for key in keys if type(keys) is list else [keys]:
        indexes.written(store._documents.get(key), key)


def _forget_indexes(self: Collection) -> None:
    embedded_index.of(self._store).clear()


def _find_one(self: Collection, filter: Any = None, *args: Any, **kwargs: Any) -> Any:
    excluded = _excluded_fields(args, kwargs)
    if excluded is None or type(filter) is not dict or self.codec_options.tz_aware:
        return _shipped["find_one"](self, filter, *args, **kwargs)
    if len(filter) == 1 and _plain_key(filter) is not None:
        doc = _stored(self, filter["_id"])  # the stored `_id` is the key: it matches
    else:
        spec = helpers.patch_datetime_awareness_in_document(filter)  # as the cursor does
        doc = next(_iter_documents(self, spec), None)
    if doc is None:
        return None
    if not excluded:
        return _copy_field(doc, dict)
    return {
        k: v if type(v) in _ATOMIC else _copy_field(v, dict)
        for k, v in doc.items()
        if k not in excluded
    }


def _excluded_fields(args: tuple[Any, ...], kwargs: dict[str, Any]) -> frozenset[str] | None:
    """The top-level fields a `find_one` call leaves out: empty for no projection, None for
    anything but a plain exclusion projection (`{"big_field": 0}`) and default sort.
    find_one_and_update asks for `find_one(filter, projection=None, sort=None)`."""
    if len(args) > 1 or any(
        name not in _DEFAULT_FIND_ARGS or (name == "sort" and value is not None)
        for name, value in kwargs.items()
    ):
        return None
    projection = args[0] if args else kwargs.get("projection")
    if projection is None:
        return frozenset()
    if type(projection) is not dict or not projection:
        return None
    for name, value in projection.items():
        if type(name) is not str or name == "_id" or "." in name or name.startswith("$"):
            return None
        if value is not False and (type(value) is not int or value != 0):
            return None
    return frozenset(projection)


def _stored(collection: Collection, key: Any) -> dict[str, Any] | None:
    """The stored document with primary key `key` (the store's own object), or None."""
    store = collection._store
    if store._ttl_indexes:  # expiry runs on access: take the store's own way in
        return store[key] if key in store else None  # noqa: SIM401 - the store has no get()
    return store._documents.get(key)


# ---- inserts of one document


def _insert(self: Collection, data: Any, session: Any = None, ordered: bool = True) -> Any:
    """mongomock's `_insert` for the common write: one JSON-like dict with a string `_id`, into
    a collection with no index (no unique one to check) and no TTL.

    Same checks (its BSON encoding, `$` and NUL in field names), the same DuplicateKeyError and
    the same stored copy (what its datetime patching makes of a JSON document: a deep copy),
    without the per-value patching walk and the store's lock. Anything else goes to mongomock.
    """
    store = self._store
    if (
        session
        or type(data) is not dict
        or type(data.get("_id")) is not str
        or store.indexes
        or store._ttl_indexes
        or not _plain(data)
        or any(key[:1] == "$" for key in data)
    ):
        return _shipped_insert(self, data, session, ordered)
    key = data["_id"]
    documents = store._documents
    if key in documents:
        raise DuplicateKeyError("E11000 Duplicate Key Error", 11000)
    documents[key] = _deepcopy(data)
    _written(self, key)
    return key


def _shipped_insert(self: Collection, data: Any, session: Any, ordered: bool) -> Any:
    try:
        inserted = _shipped["_insert"](self, data, session, ordered)
    except BaseException:
        _forget_indexes(self)  # a batch may have been inserted in part
        raise
    _written(self, inserted)
    return inserted


# ---- updates of one document by primary key


_FAST_UPDATE_OPS = frozenset({"$set", "$unset", "$inc"})
_INT64 = (-(2**63), 2**63 - 1)


def _update(
    self: Collection, spec: Any, document: Any, upsert: bool = False, *args: Any, **kwargs: Any
) -> dict[str, Any]:
    """An update, then the indexes hear of it: the one document an `_id` pins is indexed again;
    after any other write that changed something, they are dropped (rebuilt when next used)."""
    try:
        result = _update_documents(self, spec, document, upsert, *args, **kwargs)
    except BaseException:
        _forget_indexes(self)  # mongomock may have applied part of it
        raise
    key = _plain_key(spec)
    if key is not None:
        _written(self, key)
    elif result.get("n") or result.get("upserted") is not None:
        _forget_indexes(self)
    return result


def _delete(self: Collection, *args: Any, **kwargs: Any) -> Any:
    """mongomock's delete; then the indexes are dropped (positions move: rebuilt when used),
    but for a spilling store's, which its documents keep up to date (`embedded_spill`)."""
    try:
        return _shipped["_delete"](self, *args, **kwargs)
    finally:
        if type(self._store._documents) is not embedded_spill.SpilledDocuments:
            _forget_indexes(self)


def _update_documents(
    self: Collection, spec: Any, document: Any, upsert: bool = False, *args: Any, **kwargs: Any
) -> dict[str, Any]:
    """mongomock's `_update` for the common write: `$set`, `$unset` and `$inc` of top-level
    fields of the one document an `_id` pins, with JSON values, no unique index to check.

    Same effects and the same result as mongomock's, field by field in the same order, without
    its deep snapshot of the whole document (which it takes to tell whether anything changed).
    Anything else goes to mongomock.
    """
    key = _plain_key(spec)
    if (
        upsert
        or args
        or any(kwargs.values())
        or key is None
        or type(spec) is not dict
        or self._store.indexes
        or not _simple_update(document)
    ):
        return _shipped["_update"](self, spec, document, upsert, *args, **kwargs)
    doc = _stored(self, key)
    found = None if doc is None else matches(spec, doc)
    if found is None and doc is not None:
        spec = helpers.patch_datetime_awareness_in_document(spec)  # as mongomock does
        found = filter_applies(spec, doc)
    matched = bool(found)
    if matched:
        incs = document.get("$inc", {})
        if not all(type(doc.get(f, 0)) in _NUMBER for f in incs):
            return _shipped["_update"](self, spec, document, upsert, *args, **kwargs)
        changed = _apply(doc, document)
    return {
        "connectionId": self.database.client._id,
        "err": None,
        "n": 1 if matched else 0,
        "nModified": 1 if matched and changed else 0,
        "ok": 1,
        "upserted": None,
        "updatedExisting": matched,
    }


def _simple_update(document: Any) -> bool:
    if type(document) is not dict or not document or not _FAST_UPDATE_OPS.issuperset(document):
        return False
    for op, fields in document.items():
        if type(fields) is not dict or not fields:
            return False
        for name, value in fields.items():
            if type(name) is not str or not name or name == "_id" or "." in name:
                return False
            if name[0] == "$" or not _plain_key_name(name):
                return False
            if op == "$inc" and type(value) not in _NUMBER:
                return False
            if op == "$set" and not _plain(value):
                return False
    return len({name for fields in document.values() for name in fields}) == sum(
        len(fields) for fields in document.values()
    )  # a field named by two operators is mongomock's to refuse


def _plain(value: Any) -> bool:
    """JSON-like: what mongomock's datetime patching leaves as it is and BSON can encode (it
    refuses integers past 64 bits, NUL in a key, and text that is not UTF-8: a lone surrogate)."""
    kind = type(value)
    if kind is str:
        return value.isascii() or _utf8(value)
    if kind in (float, bool, type(None)):
        return True
    if kind is int:
        return _INT64[0] <= value <= _INT64[1]
    if kind is list:
        return all(_plain(v) for v in value)
    if kind is dict:
        return all(type(k) is str and _plain_key_name(k) and _plain(v) for k, v in value.items())
    return False


def _plain_key_name(name: str) -> bool:
    return "\0" not in name and (name.isascii() or _utf8(name))


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _apply(doc: dict[str, Any], document: dict[str, Any]) -> bool:
    """Apply the operators in order; True if the document changed."""
    changed = False
    for op, fields in document.items():
        for name, value in fields.items():
            old = doc.get(name, _MISSING)
            if op == "$set":
                doc[name] = new = value if type(value) in _ATOMIC else _deepcopy(value)
            elif op == "$inc":
                doc[name] = new = doc.get(name, 0) + value
            else:
                if old is not _MISSING:
                    del doc[name]
                changed = changed or old is not _MISSING
                continue
            changed = changed or old is _MISSING or not (old is new or old == new)
    return changed


def _find_one_and_update(
    self: Collection,
    filter: Any,
    update: Any,
    projection: Any = None,
    sort: Any = None,
    upsert: bool = False,
    return_document: Any = ReturnDocument.BEFORE,
    **kwargs: Any,
) -> Any:
    """mongomock's find, update and second find of one document by `_id` (a conditional
    transition), done as one lookup, one match and one change: the same answer and effect.
    Anything else (a projection, a sort, an upsert, an operator or value the update fast path
    does not take, a filter the fast matcher leaves to mongomock) goes to mongomock."""
    key = _plain_key(filter)
    store = self._store
    if (
        key is None
        or type(filter) is not dict
        or projection is not None
        or sort is not None
        or upsert
        or kwargs
        or store.indexes
        or store._ttl_indexes
        or self.codec_options.tz_aware
        or not _simple_update(update)
    ):
        return _shipped["find_one_and_update"](
            self, filter, update, projection, sort, upsert, return_document, **kwargs
        )
    doc = store._documents.get(key)
    found = None if doc is None else matches(filter, doc)
    if doc is not None and (
        found is None or not all(type(doc.get(f, 0)) in _NUMBER for f in update.get("$inc", {}))
    ):
        return _shipped["find_one_and_update"](
            self, filter, update, projection, sort, upsert, return_document, **kwargs
        )
    if not found:
        return None
    before = None if return_document is ReturnDocument.AFTER else _copy_field(doc, dict)
    _apply(doc, update)
    _written(self, key)
    return _copy_field(doc, dict) if before is None else before


# ---- quick rejection for scans


Prune = Callable[[list[dict[str, Any]]], list[dict[str, Any]]]
"""Keeps, in order, the documents that may still match one condition (drops only sure misses)."""

_ORDER = {"$lt": operator.lt, "$lte": operator.le, "$gt": operator.gt, "$gte": operator.ge}


def _pruners(filter: dict[str, Any]) -> list[Prune]:
    """Pruners for the leading simple conditions of `filter` (none if the first is not simple).

    Only a prefix is used: mongomock evaluates conditions in order and stops at the first that
    fails, so a document dropped here is one it would have refused at that same condition,
    without reaching (and perhaps raising on) a later, unsupported one. Each pruner is one list
    comprehension: a scan costs a dict lookup per document, not a matcher call.
    """
    found: list[Prune] = []
    for field, cond in filter.items():
        prune = _field_pruners(field, cond)
        if prune is None:
            break
        found += prune
    return found


def _field_pruners(field: Any, cond: Any) -> list[Prune] | None:
    if not isinstance(field, str) or field.startswith("$") or "." in field:
        return None
    if type(cond) is str:
        # equality with a string: a missing field, or another string, never matches
        def equal(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return [
                d
                for d in docs
                if (v := d.get(field, _MISSING)) == cond
                or (v is not _MISSING and type(v) is not str)
            ]

        return [equal]
    if cond is None:
        # null matches a missing field or null (or an array holding null), never a string
        return [lambda docs: [d for d in docs if type(d.get(field)) is not str]]
    if type(cond) is not dict or not cond or not all(isinstance(op, str) for op in cond):
        return None
    prunes = [_op_pruner(field, op, value) for op, value in cond.items()]
    return None if any(p is None for p in prunes) else prunes  # type: ignore[return-value]


def _op_pruner(field: str, op: str, value: Any) -> Prune | None:
    if op == "$ne":
        if value is None:  # a missing field and null both equal null
            return lambda docs: [d for d in docs if d.get(field) is not None]
        kind = type(value)
        if kind in (str, bool):  # drops a value of the same type that is equal
            return lambda docs: [
                d for d in docs if type(v := d.get(field)) is not kind or v != value
            ]
        return None
    if op in _ORDER and type(value) in _NUMBER and value == value:
        compare = _ORDER[op]
        # a comparison never matches a missing field; a number must compare
        return lambda docs: [
            d
            for d in docs
            if (v := d.get(field, _MISSING)) is not _MISSING
            and (type(v) not in _NUMBER or compare(v, value))
        ]
    return None


# ---- copies


def _copy_field(obj: Any, container: Any) -> Any:
    """mongomock's `_copy_field` (a result document's copy), without per-value dispatch."""
    kind = type(obj)
    if kind in _ATOMIC:
        return obj
    if kind is dict and container is dict:
        return {k: v if type(v) in _ATOMIC else _copy_field(v, container) for k, v in obj.items()}
    if kind is list:
        return [v if type(v) in _ATOMIC else _copy_field(v, container) for v in obj]
    return _shipped["_copy_field"](obj, container)


def _deepcopy(obj: Any, memo: Any = None) -> Any:
    """`copy.deepcopy` for the JSON-like values mongomock snapshots and stores."""
    if memo is None:
        kind = type(obj)
        if kind in _ATOMIC:
            return obj
        if kind is dict:
            return {k: v if type(v) in _ATOMIC else _deepcopy(v) for k, v in obj.items()}
        if kind is list:
            return [v if type(v) in _ATOMIC else _deepcopy(v) for v in obj]
    return copy.deepcopy(obj, memo)


_copy_module = types.SimpleNamespace(copy=copy.copy, deepcopy=_deepcopy)


# ---- installation


def install() -> None:
    """Idempotent; called by `open_database` before it hands out a mongomock database."""
    Collection._iter_documents = _iter_documents  # type: ignore[method-assign]
    Collection._get_dataset = _get_dataset  # type: ignore[method-assign]
    Collection.find_one = _find_one  # type: ignore[method-assign]
    Collection.find_one_and_update = _find_one_and_update  # type: ignore[method-assign]
    Collection._update = _update  # type: ignore[method-assign]
    Collection._insert = _insert  # type: ignore[method-assign]
    Collection._delete = _delete  # type: ignore[method-assign]
    mongomock.collection._copy_field = _copy_field
    mongomock.collection.copy = _copy_module  # type: ignore[assignment]
    Cursor._compute_results = _compute_results  # type: ignore[method-assign]
    _install_operations()


def uninstall() -> None:
    Collection._iter_documents = _shipped["_iter_documents"]  # type: ignore[method-assign]
    Collection._get_dataset = _shipped["_get_dataset"]  # type: ignore[method-assign]
    Collection.find_one = _shipped["find_one"]  # type: ignore[method-assign]
    Collection.find_one_and_update = _shipped["find_one_and_update"]  # type: ignore[method-assign]
    Collection._update = _shipped["_update"]  # type: ignore[method-assign]
    Collection._insert = _shipped["_insert"]  # type: ignore[method-assign]
    Collection._delete = _shipped["_delete"]  # type: ignore[method-assign]
    mongomock.collection._copy_field = _shipped["_copy_field"]
    mongomock.collection.copy = _shipped["copy"]
    Cursor._compute_results = _shipped["_compute_results"]  # type: ignore[method-assign]
    Collection._ensure_uniques = _shipped_ensure_uniques  # type: ignore[method-assign]
    embedded_spill.attach_by_default(True)


#: the entry points of every write (all of mongomock's writes go through them): attach mode
_WRITES = ("_insert", "_update", "_delete", "find_one_and_update")
_shipped_ensure_uniques = Collection._ensure_uniques


def _install_operations() -> None:
    """Each write as one operation on a spilling store's documents (`embedded_spill`): they
    leave memory only when no write is running; reads, the default, move nothing. A unique
    check (a read inside a write) copies documents from disk instead of bringing them back."""
    for name in _WRITES:
        method = getattr(Collection, name)
        if not hasattr(method, "_paysim_operation"):
            setattr(Collection, name, embedded_spill.operation(method, writes=True))
    if not hasattr(Collection._ensure_uniques, "_paysim_operation"):
        Collection._ensure_uniques = embedded_spill.operation(  # type: ignore[method-assign]
            _shipped_ensure_uniques, writes=False
        )
    embedded_spill.attach_by_default(False)


@contextmanager
def shipped() -> Iterator[None]:
    """mongomock exactly as shipped inside the block (to compare answers with), then fast again."""
    uninstall()
    try:
        yield
    finally:
        install()


def peek(collection: Any, doc_id: Any) -> Mapping[str, Any] | None:
    """The stored document itself (do not modify it), without a copy; None if absent.

    For readers that only look, such as the history's store observer. Not mongomock: a
    `find_one` by `_id`.
    """
    if isinstance(collection, Collection) and _plain_key({"_id": doc_id}) is not None:
        store = collection._store
        documents = store._documents
        if type(documents) is embedded_spill.SpilledDocuments and not store._ttl_indexes:
            return documents.peek(doc_id)  # type: ignore[no-any-return]
        return _stored(collection, doc_id)
    return collection.find_one({"_id": doc_id})


def client(
    hot_documents: int = embedded_spill.DEFAULT_HOT, directory: Path | None = None
) -> mongomock.MongoClient:
    """A mongomock client with the fast paths, whose collections keep at most `hot_documents`
    each in memory between operations and the others on disk (`embedded_spill`)."""
    install()
    return mongomock.MongoClient(_store=ServerStore(hot_documents, directory))
