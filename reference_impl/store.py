"""The store port: pymongo's collection API, awaited.

Engines write `await env.store.purchases.find_one_and_update(...)` exactly as with pymongo's
async client. Underneath is any synchronous pymongo-API `Database` (mongomock by default, a real
MongoDB when `MONGODB_URI` is set). Every call first awaits the observer, which is where the
simulator injects store latency, crash points and interleaving, and then reports the result so
writes land in the history. Without an observer every call is still a scheduling point.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import anyio
from pymongo.database import Database

WRITE_OPS = frozenset(
    {
        "insert_one",
        "update_one",
        "update_many",
        "find_one_and_update",
        "delete_one",
        "delete_many",
        "replace_one",
    }
)


class StoreObserver(Protocol):
    async def before(
        self, collection: str, op: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]
    ) -> None: ...

    def after(
        self,
        collection: str,
        op: str,
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        result: Any,
    ) -> None: ...


class _Checkpoint:
    """Default observer: yield to the scheduler, record nothing."""

    async def before(
        self, collection: str, op: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]
    ) -> None:
        await anyio.lowlevel.checkpoint()

    def after(
        self,
        collection: str,
        op: str,
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        result: Any,
    ) -> None:
        return None


class AsyncCursor:
    def __init__(
        self, collection: AsyncCollection, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        self._collection = collection
        self._args = args
        self._kwargs = kwargs

    async def to_list(self, length: int | None = None) -> list[dict[str, Any]]:
        docs = await self._collection._call(
            "find", self._args, self._kwargs, lambda c: list(c.find(*self._args, **self._kwargs))
        )
        return docs if length is None else docs[:length]


class AsyncCollection:
    def __init__(self, collection: Any, observer: StoreObserver) -> None:
        self._sync = collection
        self._observer = observer
        self.name: str = collection.name

    async def _call(self, op: str, args: tuple[Any, ...], kwargs: dict[str, Any], run: Any) -> Any:
        await self._observer.before(self.name, op, args, kwargs)
        result = run(self._sync)
        self._observer.after(self.name, op, args, kwargs, result)
        return result

    def find(self, *args: Any, **kwargs: Any) -> AsyncCursor:
        return AsyncCursor(self, args, kwargs)

    def __getattr__(self, op: str) -> Any:
        if op.startswith("_"):
            raise AttributeError(op)
        method = getattr(self._sync, op)

        async def call(*args: Any, **kwargs: Any) -> Any:
            return await self._call(op, args, kwargs, lambda _c: method(*args, **kwargs))

        call.__name__ = op
        setattr(self, op, call)  # found as an attribute from now on: no lookup per call
        return call


class AsyncDatabase:
    """Collections by attribute or item, like pymongo's `AsyncDatabase`."""

    def __init__(self, database: Database[Any], observer: StoreObserver | None = None) -> None:
        self.sync = database
        self.observer: StoreObserver = observer or _Checkpoint()

    def __getattr__(self, name: str) -> AsyncCollection:
        if name.startswith("_"):
            raise AttributeError(name)
        return AsyncCollection(self.sync[name], self.observer)

    def __getitem__(self, name: str) -> AsyncCollection:
        return AsyncCollection(self.sync[name], self.observer)


def open_database(name: str = "paysim") -> AsyncDatabase:
    """A fresh embedded (mongomock) database, or the real MongoDB at `MONGODB_URI` when set."""
    import os

    uri = os.environ.get("MONGODB_URI")
    if uri:
        import pymongo

        client: Any = pymongo.MongoClient(uri)
        client.drop_database(name)
        return AsyncDatabase(client[name])
    from reference_impl.embedded_store import client

    return AsyncDatabase(client()[name])
