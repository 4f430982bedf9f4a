"""The simulator's view into every store call an engine makes.

Before a call: the scheduling point where store latency, slow handlers, pauses and crash points
are injected. After a write: one history line with the affected document's resulting state, so
checkers can replay "at every instant" invariants from the history alone.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import trio

from reference_impl.embedded_store import peek
from reference_impl.store import WRITE_OPS
from simulator.requests import current_request

#: fields of a written document that the history keeps (enough for every invariant)
_TRACKED = {
    "purchases": ("status", "user_id", "program_id", "class_rep", "stripe_session_id"),
    "programs": ("class_rep_count", "class_rep_limit"),
}


class StoreObserver:
    def __init__(
        self,
        *,
        instance: str,
        record: Callable[..., Any],
        sync_db: Any,
        before_call: Callable[[str, str], Awaitable[None]],
    ) -> None:
        self._instance = instance
        self._record = record
        self._db = sync_db
        self._collections: dict[str, Any] = {}  # pymongo and mongomock build one per lookup
        self._before_call = before_call

    async def before(
        self, collection: str, op: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]
    ) -> None:
        await self._before_call(collection, op)
        await trio.lowlevel.checkpoint()

    def after(
        self,
        collection: str,
        op: str,
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        result: Any,
    ) -> None:
        if op not in WRITE_OPS:
            return
        doc_id = _written_id(op, args, result)
        entry: dict[str, Any] = {
            "coll": collection,
            "op": op,
            "instance": self._instance,
            "req": current_request.get(),
        }
        if op in ("update_one", "update_many", "delete_one", "replace_one"):
            entry["modified"] = result.modified_count if hasattr(result, "modified_count") else None
        if op == "find_one_and_update":
            entry["modified"] = result is not None
        if doc_id is not None:
            entry["id"] = doc_id
            fields = _TRACKED.get(collection)
            if fields:
                coll = self._collections.get(collection)
                if coll is None:
                    coll = self._collections[collection] = self._db[collection]
                doc = peek(coll, doc_id) or {}
                entry["doc"] = {f: doc.get(f) for f in fields}
        self._record("store.write", **entry)


def _written_id(op: str, args: tuple[Any, ...], result: Any) -> Any:
    if op == "insert_one":
        return getattr(result, "inserted_id", None)
    if op == "find_one_and_update":
        return result.get("_id") if result else _filter_id(args)
    return _filter_id(args)


def _filter_id(args: tuple[Any, ...]) -> Any:
    if args and isinstance(args[0], dict):
        value = args[0].get("_id")
        if isinstance(value, str | int):
            return value
    return None
