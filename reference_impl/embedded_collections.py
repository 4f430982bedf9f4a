"""mongomock's server store, with every collection's documents in `embedded_spill`.

mongomock keeps a collection's documents in `CollectionStore._documents`, an OrderedDict, and
reaches them only through that store (its lookups, writes, scans and TTL sweeps). These
subclasses put a `SpilledDocuments` there instead and keep it when the collection is dropped;
`mongomock.MongoClient(_store=ServerStore(hot))` gives a client whose collections spill. Scans
go through `scan` (one document at a time from disk), and a TTL sweep only reads.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mongomock.store

from reference_impl.embedded_spill import DEFAULT_HOT, SpilledDocuments


class CollectionStore(mongomock.store.CollectionStore):  # type: ignore[misc]
    def __init__(self, name: str, hot: int = DEFAULT_HOT, directory: Path | None = None) -> None:
        super().__init__(name)
        self._documents: SpilledDocuments = SpilledDocuments(hot, directory)

    def drop(self) -> None:
        documents = self._documents
        super().drop()
        documents.clear()
        self._documents = documents

    @property
    def documents(self) -> Iterator[Any]:
        self._remove_expired_documents()
        with self._rwlock.reader():
            yield from self._documents.scan()

    def _remove_expired_documents(self) -> None:
        if not self._ttl_indexes:
            return
        documents = self._documents
        outer, documents._mode = documents._mode, False  # it reads, then deletes by key
        try:
            super()._remove_expired_documents()
        finally:
            documents._mode = outer


class DatabaseStore(dict[str, CollectionStore]):
    """mongomock's DatabaseStore (name -> collection store, created on first use) as a dict
    itself: `Collection._store` looks its store up here on every call (tens of times a
    purchase), and a dict finds it without a Python frame. The rest is mongomock's."""

    def __init__(self, hot: int = DEFAULT_HOT, directory: Path | None = None) -> None:
        super().__init__()
        self._hot = hot
        self._directory = directory

    def __missing__(self, name: str) -> CollectionStore:
        col = self[name] = CollectionStore(name, self._hot, self._directory)
        return col

    def __bool__(self) -> bool:
        return True  # a store, not an empty container (mongomock asks `_store or DatabaseStore()`)

    @property
    def _collections(self) -> dict[str, CollectionStore]:
        return self

    def __contains__(self, col_name: object) -> bool:
        return bool(self[col_name].is_created)  # type: ignore[index]

    def list_created_collection_names(self) -> list[str]:
        return [name for name, col in self.items() if col.is_created]

    def create_collection(self, name: str) -> CollectionStore:
        col = self[name]
        col.create()
        return col

    def rename(self, name: str, new_name: str) -> None:
        col = self.pop(name, None)
        if col is None:
            col = CollectionStore(new_name, self._hot, self._directory)
        col.name = new_name
        self[new_name] = col

    @property
    def is_created(self) -> bool:
        return any(col.is_created for col in self.values())


class ServerStore(mongomock.store.ServerStore):  # type: ignore[misc]
    """Databases whose collections keep at most `hot` documents each in memory between
    operations; the others in scratch files in `directory` (default: the temp folder)."""

    def __init__(self, hot: int = DEFAULT_HOT, directory: Path | None = None) -> None:
        super().__init__()
        self._hot = hot
        self._directory = directory

    def __getitem__(self, db_name: str) -> DatabaseStore:
        db = self._databases.get(db_name)
        if db is None:
            db = self._databases[db_name] = DatabaseStore(self._hot, self._directory)
        return db  # type: ignore[no-any-return]
