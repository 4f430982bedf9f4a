"""Equality indexes for the embedded store: `{field: "text", ...}` finds its candidates by lookup.

Why: mongomock answers `find_one({"stripe_session_id": s})` by scanning every purchase, so an
engine that looks purchases up by session id on each webhook makes a run quadratic. MongoDB
would use an index; so does the embedded store, built on first use of a field and kept up to
date by the store's writes (`embedded_store` reports each one):

- a document inserted, or changed by a write pinned to its `_id`, is indexed again;
- any other write (an update by another filter) drops the collection's indexes, to be rebuilt
  on the next query (the engines do not do that on a hot path); so does a delete from a plain
  mongomock store, whose positions it cannot keep (a spilling store, `embedded_spill`, reports
  its deletes and keeps its indexes).

Only string equality is served (a field equal to the string, or an array holding it: MongoDB's
equality), and the candidates go through mongomock's own matcher in stored order, so the answer
is the scan's.

Lean, because a long run indexes every purchase: a document that lacks the field (or holds no
string in it) costs nothing; a value held by one document maps to its key alone (not to a
one-key container); a document's values are one string, not a tuple, when it holds one; and
the position that orders candidates is kept once per collection (a plain store: one counter per
key, shared by every field), or is the spilling store's own sequence number. In a spilling
store these indexes cover only the documents in memory: those on disk are indexed on disk
(`embedded_spill`), and `found` merges the two.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

_ATTR = "_paysim_indexes"

Values = str | tuple[str, ...]
"""The strings a document holds in an indexed field: one, or several (an array)."""


class Spilled(Protocol):
    """What a spilling store (`embedded_spill.SpilledDocuments`) does for its indexes."""

    position: Callable[[Any], int]

    def hot_items(self) -> Iterable[tuple[Any, Mapping[str, Any]]]: ...
    def index_cold(self, field: str) -> None: ...
    def forget_cold_indexes(self) -> None: ...
    def indexed(self, field: str, value: str, hot: list[Any]) -> Iterable[dict[str, Any]]: ...


class FieldIndex:
    """One field: string value -> the key holding it, or the set of keys holding it."""

    __slots__ = ("_ids", "_position", "_values", "field")

    def __init__(self, field: str, position: Callable[[Any], int]) -> None:
        self.field = field
        self._position = position
        self._ids: dict[str, Any] = {}  # a key, or a set of keys (keys are hashable: never sets)
        self._values: dict[Any, Values] = {}

    def put(self, key: Any, doc: Mapping[str, Any]) -> None:
        """(Re)index the document `key`."""
        values = _strings(doc.get(self.field))
        old = self._values.get(key)
        if old == values:
            return
        if old is not None:
            self.drop(key)
        if values is None:
            return
        self._values[key] = values
        ids = self._ids
        for value in (values,) if type(values) is str else values:
            held = ids.get(value)
            if held is None:
                ids[value] = key
            elif type(held) is set:
                held.add(key)
            elif held != key:
                ids[value] = {held, key}

    def drop(self, key: Any) -> None:
        values = self._values.pop(key, None)
        if values is None:
            return
        ids = self._ids
        for value in (values,) if type(values) is str else values:
            held = ids.get(value)
            if type(held) is set:
                held.discard(key)
                if len(held) == 1:
                    ids[value] = next(iter(held))
            elif held == key:
                del ids[value]

    def candidates(self, value: str) -> list[Any]:
        """Keys of the documents whose field equals `value` (or holds it), in stored order."""
        held = self._ids.get(value)
        if held is None:
            return []
        if type(held) is not set:
            return [held]
        return sorted(held, key=self._position)


class Indexes:
    """The indexes of one collection store; `spilled`: the store's documents, when it spills."""

    def __init__(self, spilled: Spilled | None = None) -> None:
        self.fields: dict[str, FieldIndex] = {}
        self._spilled = spilled
        self._pos: dict[Any, int] = {}  # a plain store's positions (none kept when spilling)
        self._position: Callable[[Any], int] = (
            self._pos.__getitem__ if spilled is None else spilled.position
        )

    def field(self, name: str, documents: Iterable[tuple[Any, Mapping[str, Any]]]) -> FieldIndex:
        """The index of `name`, built from `documents` ((key, document) in store order) when
        first asked for; a spilling store indexes its documents on disk as well."""
        index = self.fields.get(name)
        if index is None:
            index = FieldIndex(name, self._position)
            if self._spilled is not None:
                self._spilled.index_cold(name)
                documents = self._spilled.hot_items()
            pos = self._pos
            for key, doc in documents:
                if self._spilled is None and key not in pos:
                    pos[key] = len(pos)
                index.put(key, doc)
            self.fields[name] = index
        return index

    def written(self, doc: Mapping[str, Any] | None, key: Any) -> None:
        """The document `key` was inserted or changed (None: it is gone)."""
        if not self.fields:
            return
        if doc is None:
            self.forget(key)
            return
        pos = self._pos
        if self._spilled is None and key not in pos:
            pos[key] = len(pos)
        for index in self.fields.values():
            index.put(key, doc)

    def forget(self, key: Any) -> None:
        """Nothing in memory about `key` any more (deleted, or gone to disk)."""
        for index in self.fields.values():
            index.drop(key)

    def clear(self) -> None:
        self.fields.clear()
        self._pos.clear()
        if self._spilled is not None:
            self._spilled.forget_cold_indexes()


def of(store: Any) -> Indexes:
    """The indexes kept on a mongomock collection store (created empty); a spilling store's
    documents bring their own."""
    indexes = getattr(store, _ATTR, None)
    if indexes is None:
        indexes = getattr(store._documents, "indexes", None) or Indexes()
        setattr(store, _ATTR, indexes)
    return indexes


def found(store: Any, field: str, value: str) -> Iterable[dict[str, Any]]:
    """The stored documents whose `field` equals `value` or holds it, in store order (a list,
    or, from a spilling store's disk in a read, an iterator)."""
    documents = store._documents
    indexes = of(store)
    index = indexes.fields.get(field) or indexes.field(field, documents.items())
    keys = index.candidates(value)
    spilled = getattr(documents, "indexes", None)
    if spilled is not None:
        return documents.indexed(field, value, keys)  # type: ignore[no-any-return]
    return [documents[key] for key in keys]


def servable(filter: Any) -> tuple[str, str] | None:
    """(field, value) when the filter's first condition is string equality on a plain field."""
    if type(filter) is not dict or not filter:
        return None
    field, value = next(iter(filter.items()))
    if type(value) is not str or type(field) is not str or field == "_id":
        return None
    if not field or field[0] == "$" or "." in field:
        return None
    return field, value


def strings(value: Any) -> Values | None:
    """The strings an indexed field holding `value` is found by (None: not any)."""
    return _strings(value)


def _strings(value: Any) -> Values | None:
    if type(value) is str:
        return value
    if type(value) is list:
        found = tuple(dict.fromkeys(v for v in value if type(v) is str))
        if len(found) > 1:
            return found
        return found[0] if found else None
    return None
