"""Equality indexes for the embedded store: `{field: "text", ...}` finds its candidates by lookup.

Why: mongomock answers `find_one({"stripe_session_id": s})` by scanning every purchase, so an
engine that looks purchases up by session id on each webhook makes a run quadratic. MongoDB
would use an index; so does the embedded store, built on first use of a field and kept up to
date by the store's writes (`embedded_store` reports each one):

- a document inserted, or changed by a write pinned to its `_id`, is indexed again;
- any other write (a delete, an update by another filter) drops the collection's indexes, to be
  rebuilt on the next query (the engines do neither on a hot path).

Only string equality is served (a field equal to the string, or an array holding it: MongoDB's
equality), and the candidates go through mongomock's own matcher in stored order, so the answer
is the scan's. Positions record insertion order, which is the store's order while nothing is
deleted (a delete drops the indexes).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

_ATTR = "_paysim_indexes"


class FieldIndex:
    """One field: string value -> ids of the documents holding it, each id's position."""

    def __init__(self, field: str, documents: Iterable[Mapping[str, Any]]) -> None:
        self.field = field
        self._ids: dict[str, dict[Any, None]] = {}
        self._values: dict[Any, tuple[str, ...]] = {}
        self._pos: dict[Any, int] = {}
        for doc in documents:
            self.put(doc)

    def put(self, doc: Mapping[str, Any]) -> None:
        """(Re)index `doc`; a new id goes after every other."""
        key = doc["_id"]
        self.drop(key)
        if key not in self._pos:
            self._pos[key] = len(self._pos)
        values = _strings(doc.get(self.field))
        self._values[key] = values
        for value in values:
            self._ids.setdefault(value, {})[key] = None

    def drop(self, key: Any) -> None:
        for value in self._values.pop(key, ()):
            ids = self._ids.get(value)
            if ids is not None:
                ids.pop(key, None)
                if not ids:
                    del self._ids[value]

    def candidates(self, value: str) -> list[Any]:
        """Ids of the documents whose field equals `value` (or holds it), in stored order."""
        ids = self._ids.get(value)
        if not ids:
            return []
        if len(ids) == 1:
            return list(ids)
        return sorted(ids, key=self._pos.__getitem__)


class Indexes:
    """The indexes of one collection store."""

    def __init__(self) -> None:
        self.fields: dict[str, FieldIndex] = {}

    def field(self, name: str, documents: Iterable[Mapping[str, Any]]) -> FieldIndex:
        index = self.fields.get(name)
        if index is None:
            index = self.fields[name] = FieldIndex(name, documents)
        return index

    def written(self, doc: Mapping[str, Any] | None, key: Any) -> None:
        """The document `key` was inserted or changed (None: it is gone)."""
        for index in self.fields.values():
            if doc is None:
                index.drop(key)
            else:
                index.put(doc)

    def clear(self) -> None:
        self.fields.clear()


def of(store: Any) -> Indexes:
    """The indexes kept on a mongomock collection store (created empty)."""
    indexes = getattr(store, _ATTR, None)
    if indexes is None:
        indexes = Indexes()
        setattr(store, _ATTR, indexes)
    return indexes


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


def _strings(value: Any) -> tuple[str, ...]:
    if type(value) is str:
        return (value,)
    if type(value) is list:
        return tuple(dict.fromkeys(v for v in value if type(v) is str))
    return ()
