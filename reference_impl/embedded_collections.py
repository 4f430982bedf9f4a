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
        outer, documents.attach = documents.attach, False  # it reads, then deletes by key
        try:
            super()._remove_expired_documents()
        finally:
            documents.attach = outer


class DatabaseStore(mongomock.store.DatabaseStore):  # type: ignore[misc]
    def __init__(self, hot: int = DEFAULT_HOT, directory: Path | None = None) -> None:
        super().__init__()
        self._hot = hot
        self._directory = directory

    def __getitem__(self, col_name: str) -> CollectionStore:
        col = self._collections.get(col_name)
        if col is None:
            col = self._collections[col_name] = self._new(col_name)
        return col  # type: ignore[no-any-return]

    def rename(self, name: str, new_name: str) -> None:
        col = self._collections.pop(name, None)
        if col is None:
            col = self._new(new_name)
        col.name = new_name
        self._collections[new_name] = col

    def _new(self, name: str) -> CollectionStore:
        return CollectionStore(name, self._hot, self._directory)


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
