"""The simulator's view into every store call an engine makes.

Before a call: the scheduling point where store latency, slow handlers, pauses and crash points
are injected. After a write: one history line with the affected document's resulting state, so
checkers can replay "at every instant" invariants from the history alone.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from reference_impl.embedded_store import peek
from reference_impl.store import WRITE_OPS
from simulator import scheduling
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
        #: ids a `delete_many` is about to delete: read after the last scheduling point before
        #: the call, so no other task runs between the read and the delete
        self._doomed: list[Any] = []

    async def before(
        self, collection: str, op: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]
    ) -> None:
        await self._before_call(collection, op)
        await scheduling.checkpoint()
        if op == "delete_many" and args:
            found = self._collection(collection).find(args[0], {"_id": 1})
            self._doomed = [doc["_id"] for doc in found]

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
        if op == "delete_many":
            doomed, self._doomed = self._doomed, []
            for doc_id in doomed:  # one line per deleted document, as a delete_one would write
                self._write(collection, "delete_many", doc_id, modified=None)
            return
        self._write(collection, op, _written_id(op, args, result), modified=_modified(op, result))

    def _collection(self, name: str) -> Any:
        coll = self._collections.get(name)
        if coll is None:
            coll = self._collections[name] = self._db[name]
        return coll

    def _write(self, collection: str, op: str, doc_id: Any, *, modified: Any) -> None:
        entry: dict[str, Any] = {
            "coll": collection,
            "op": op,
            "instance": self._instance,
            "req": current_request.get(),
        }
        if op in _COUNTED:
            entry["modified"] = modified
        if doc_id is not None:
            entry["id"] = doc_id
            fields = _TRACKED.get(collection)
            if fields:
                doc = peek(self._collection(collection), doc_id) or {}
                entry["doc"] = {f: doc.get(f) for f in fields}
        self._record("store.write", **entry)


_COUNTED = frozenset(
    {"update_one", "update_many", "delete_one", "delete_many", "replace_one", "find_one_and_update"}
)


def _modified(op: str, result: Any) -> Any:
    if op == "find_one_and_update":
        return result is not None
    return result.modified_count if hasattr(result, "modified_count") else None


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
