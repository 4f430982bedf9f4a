"""The embedded store: mongomock, with a primary-key fast path.

mongomock answers every query by scanning the whole collection, so a lookup by `_id` costs
O(collection size) and long simulations slow down quadratically. MongoDB serves `_id`
equality from its primary index; this gives mongomock the same: a filter with a plain `_id`
value reads that one document and applies the rest of the filter to it. Results are identical
to mongomock's (tests/test_store.py compares them); only the cost changes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import mongomock
from bson import ObjectId
from mongomock.collection import Collection
from mongomock.filtering import filter_applies

_scan = Collection._iter_documents
_KEY_TYPES = (str, int, ObjectId)


def _iter_documents(self: Collection, filter: Any) -> Iterator[dict[str, Any]]:
    if isinstance(filter, Mapping):
        key = filter.get("_id")
        if isinstance(key, _KEY_TYPES) and not isinstance(key, bool):
            store = self._store
            doc = store[key] if key in store else None  # noqa: SIM401 - the store has no get()
            return iter([doc] if doc is not None and filter_applies(filter, doc) else [])
    return _scan(self, filter)


def install() -> None:
    """Idempotent; called by `open_database` before it hands out a mongomock database."""
    Collection._iter_documents = _iter_documents  # type: ignore[method-assign]


def client() -> mongomock.MongoClient:
    install()
    return mongomock.MongoClient()
