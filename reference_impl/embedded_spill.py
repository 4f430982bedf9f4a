"""A collection's documents in bounded memory: the recently used in memory, the rest on disk.

Why: mongomock keeps every document of every collection in a dict for as long as the client
lives, so a long simulation's memory grows with its length (about 1.7 KB a purchase in the
embedded store alone). `SpilledDocuments` replaces a collection store's `_documents` (an
insertion-ordered mapping of key -> document) with one that keeps at most `hot` documents in
memory (least recently used leave first) and the others in a scratch SQLite file: same keys,
same order, same documents, so every answer is mongomock's.

The subtle part is that mongomock and the fast paths change stored documents in place: the dict
a lookup returns is the stored document. So a document leaves memory only at a safe point, when
no operation is running on the collection (`operation`, which the embedded store wraps around
every mongomock entry point it installs), and is written to disk as it is then. Inside an
operation, what is handed out depends on what the operation may do with it:

- an operation that writes (`attach`, the default: also the mode of anything not wrapped, such
  as mongomock as shipped) gets the stored document itself: one on disk is brought back into
  memory first and stays there at least until the operation ends;
- an operation that only reads (a find, a count, a unique check, the final snapshot) gets the
  documents in memory as they are and those on disk as fresh copies, which stay on disk: a scan
  of the whole collection costs one document at a time, not the collection.

Order is a sequence number given to a key when it is first stored (a key deleted and stored
again goes last, as in an OrderedDict); a scan merges the documents in memory with those on
disk by it, reading the disk a chunk at a time. Documents are written by `embedded_codec`
(orjson, or pickle for what JSON would not read back exactly). The file is unlinked as soon as
it is open (POSIX), holds nothing a later run needs, and is never written with a journal or
fsync. Only keys that are
strings or ObjectIds leave memory (a key's bytes must compare as the key does: an int key equals
the float of the same value, which bytes would not); a document that cannot be written stays.

The equality indexes (`embedded_index`) of a spilling store cover the documents in memory; the
documents on disk are indexed in an `idx` table written with them, so a lookup by value costs one
indexed query, not a scan.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sqlite3
import tempfile
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping, ValuesView
from heapq import merge
from pathlib import Path
from typing import Any, TypeVar

from bson import ObjectId

from reference_impl import embedded_index
from reference_impl.embedded_codec import decode, encode

#: documents kept in memory per collection by default: a simulation's recent purchases, slots
#: and seat holds (what webhooks and the reconciler read again) stay in memory
DEFAULT_HOT = 4096
#: at most this many documents leave memory at a time (one write to disk for all)
MAX_BATCH = 256
#: rows read per round trip when a scan reads the disk
_CHUNK = 256

_MISSING: Any = object()

F = TypeVar("F", bound=Callable[..., Any])

_SCHEMA = """
CREATE TABLE docs (seq INTEGER PRIMARY KEY, key BLOB NOT NULL UNIQUE, body BLOB NOT NULL);
CREATE TABLE idx (
    field INTEGER NOT NULL, value BLOB NOT NULL, seq INTEGER NOT NULL,
    PRIMARY KEY (field, value, seq)
) WITHOUT ROWID;
"""


def _key_bytes(key: Any) -> bytes | None:
    """The bytes a key is stored under on disk, or None if it must stay in memory."""
    kind = type(key)
    if kind is str:
        return b"s" + key.encode("utf-8", "surrogatepass")
    if kind is ObjectId:
        return b"o" + key.binary
    return None


def _key_of(data: bytes) -> Any:
    if data[:1] == b"s":
        return data[1:].decode("utf-8", "surrogatepass")
    return ObjectId(data[1:])


def _text(value: str) -> bytes:
    return value.encode("utf-8", "surrogatepass")


class _Disk:
    """The scratch SQLite file of one collection (created when a document first leaves memory)."""

    def __init__(self, directory: Path | None) -> None:
        fd, name = tempfile.mkstemp(prefix="paysim-store-", suffix=".sqlite3", dir=directory)
        os.close(fd)
        self.path = Path(name)
        db = sqlite3.connect(name, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=OFF")
        db.execute("PRAGMA synchronous=OFF")
        db.execute("PRAGMA temp_store=MEMORY")
        db.execute("PRAGMA cache_size=-2048")  # KiB: a small, fixed page cache
        db.executescript(_SCHEMA)
        db.execute("BEGIN")  # one open transaction: nothing needs to survive a crash
        with contextlib.suppress(OSError):  # Windows: removed by close() instead
            self.path.unlink()  # the open connection keeps the file (POSIX)
        self.db = db

    def close(self) -> None:
        try:
            self.db.close()
        finally:
            self.path.unlink(missing_ok=True)


class SpilledDocuments(MutableMapping[Any, Any]):
    """Key -> document in insertion order, at most `hot` documents in memory between operations
    (module docstring). `directory`: where the scratch file goes (default: the temp folder)."""

    def __init__(self, hot: int = DEFAULT_HOT, directory: Path | None = None) -> None:
        if hot < 0:
            raise ValueError("hot must be >= 0")
        self.hot = hot
        self._directory = directory
        self._disk: _Disk | None = None
        self._hot: dict[Any, Any] = {}  # key -> document, in sequence order unless _shuffled
        self._shuffled = False
        self._seq: dict[Any, int] = {}  # key -> sequence number, for the keys in memory
        self._lru: OrderedDict[Any, None] = OrderedDict()  # the keys that may leave, oldest first
        self._next = 0
        self._cold = 0  # documents on disk
        self._absent: Any = _MISSING  # the last key found on neither side (insert: then stored)
        self._fields: dict[str, int] = {}  # indexed field -> its number in `idx`
        #: a key's place in store order (of a key in memory): what orders index candidates
        self.position: Callable[[Any], int] = self._seq.__getitem__
        self.indexes = embedded_index.Indexes(self)
        #: while an operation runs: True in a write (attach mode), False in a look; else None
        self._mode: bool | None = None

    @property
    def attach(self) -> bool:
        """Attach mode (a write gets the stored document itself, brought back from disk) or
        read mode (documents on disk are copied and stay there)."""
        mode = self._mode
        return _ATTACH_BY_DEFAULT[0] if mode is None else mode

    # ---- the mapping

    def __len__(self) -> int:
        return len(self._hot) + self._cold

    def __contains__(self, key: object) -> bool:
        if key in self._hot:
            return True
        if not self._cold or self._row(key) is None:
            self._absent = key
            return False
        return True

    def __getitem__(self, key: Any) -> Any:
        doc = self.get(key, _MISSING)
        if doc is _MISSING:
            raise KeyError(key)
        return doc

    def get(self, key: Any, default: Any = None) -> Any:
        doc = self._hot.get(key, _MISSING)
        if doc is not _MISSING:
            try:  # noqa: SIM105 - the hottest line of the store: no context manager
                self._lru.move_to_end(key)
            except KeyError:  # a key that never leaves memory
                pass
            return doc
        if not self._cold:
            return default
        row = self._row(key)
        if row is None:
            return default
        seq, body = row
        doc = decode(body)
        return self._bring_back(key, seq, doc) if self.attach else doc

    def __setitem__(self, key: Any, doc: Any) -> None:
        hot = self._hot
        if key in hot:
            hot[key] = doc
            with contextlib.suppress(KeyError):  # a key that never leaves memory
                self._lru.move_to_end(key)
        else:
            row = None
            if self._cold and key is not self._absent:
                row = self._row(key)
            if row is None:
                seq = self._next
                self._next += 1
            else:
                seq = row[0]
                self._remove_cold(seq, decode(row[1]))
                self._shuffled = True
            hot[key] = doc
            self._seq[key] = seq
            if type(key) is str or type(key) is ObjectId:  # it may leave memory (_key_bytes)
                self._lru[key] = None
        self._absent = _MISSING
        self.indexes.written(doc, key)

    def __delitem__(self, key: Any) -> None:
        if self._hot.pop(key, _MISSING) is not _MISSING:
            del self._seq[key]
            self._lru.pop(key, None)
            self.indexes.forget(key)
            return
        row = self._row(key) if self._cold else None
        if row is None:
            raise KeyError(key)
        self._remove_cold(row[0], decode(row[1]))

    def peek(self, key: Any) -> Any:
        """The document `key` for a reader that only looks (None if absent): the stored one if
        it is in memory, else a copy read from disk; nothing moves, recency included."""
        doc = self._hot.get(key)
        if doc is not None or not self._cold:
            return doc
        row = self._row(key)
        return None if row is None else decode(row[1])

    def __iter__(self) -> Iterator[Any]:
        return (key for _, key, _, _ in self._walk(bodies=False))

    def values(self) -> ValuesView[Any]:
        return _Values(self)

    def clear(self) -> None:
        """Everything gone (a dropped collection); the indexes too."""
        self._hot.clear()
        self._seq.clear()
        self._lru.clear()
        self._shuffled = False
        self._cold = 0
        self._absent = _MISSING
        self.indexes.clear()
        if self._disk is not None:
            self._disk.db.execute("DELETE FROM docs")

    def close(self) -> None:
        """Drop the scratch file (the documents on disk are lost: call at the end)."""
        if self._disk is not None:
            self._disk.close()
            self._disk = None

    # ---- scans

    def scan(self, keep: Callable[[Any], bool] | None = None) -> Iterator[Any]:
        """The documents `keep` accepts (all by default), in store order, for the operation in
        progress: in attach mode each one given is the stored document, brought back into
        memory if it was on disk. Documents stored after the scan starts are not seen."""
        attach = self.attach
        if not self._cold:
            docs = list(self._in_order().values())
            return iter(docs) if keep is None else (doc for doc in docs if keep(doc))
        return self._scan(keep, attach)

    def _scan(self, keep: Callable[[Any], bool] | None, attach: bool) -> Iterator[Any]:
        for seq, key, doc, on_disk in self._walk(bodies=True):
            if keep is not None and not keep(doc):
                continue
            yield self._bring_back(key, seq, doc) if attach and on_disk else doc

    def _walk(self, *, bodies: bool) -> Iterator[tuple[int, Any, Any, bool]]:
        """(sequence number, key, document, whether it was read from disk) in store order: the
        documents in memory when the walk starts merged with those on disk, read a chunk at a
        time. Where a document is when its turn comes decides what is given, so one that moved
        between memory and disk meanwhile is given once, as it is then. Without `bodies`,
        documents on disk are None."""
        top = self._next
        in_memory = [(self._seq[key], key, None) for key in self._in_order()]
        last = -1
        for seq, key, body in merge(in_memory, self._disk_rows(top, bodies=bodies), key=_first):
            if seq <= last:
                continue
            last = seq
            doc = self._hot.get(key, _MISSING)
            if doc is not _MISSING and self._seq[key] == seq:
                yield seq, key, doc, False
            elif body is not None:
                yield seq, key, decode(body), True
            else:  # in memory when the walk started, on disk (or gone) now
                row = self._row(key)
                if row is not None and row[0] == seq:
                    yield seq, key, decode(row[1]) if bodies else None, True

    def _disk_rows(self, top: int, *, bodies: bool) -> Iterator[tuple[int, Any, bytes | None]]:
        if self._disk is None:
            return
        db = self._disk.db
        query = (
            "SELECT seq, key, body FROM docs WHERE seq > ? AND seq < ? ORDER BY seq LIMIT ?"
            if bodies
            else "SELECT seq, key, NULL FROM docs WHERE seq > ? AND seq < ? ORDER BY seq LIMIT ?"
        )
        after = -1
        while True:
            rows = db.execute(query, (after, top, _CHUNK)).fetchall()
            for seq, key, body in rows:
                yield seq, _key_of(key), body
            if len(rows) < _CHUNK:
                return
            after = rows[-1][0]

    def _in_order(self) -> dict[Any, Any]:
        """The documents in memory, in sequence order."""
        if self._shuffled:
            seq = self._seq
            self._hot = dict(sorted(self._hot.items(), key=lambda item: seq[item[0]]))
            self._shuffled = False
        return self._hot

    # ---- for the equality indexes (embedded_index)

    def hot_items(self) -> Iterable[tuple[Any, Mapping[str, Any]]]:
        return list(self._hot.items())

    def index_cold(self, field: str) -> None:
        """Index `field` of the documents on disk (a new index)."""
        number = self._fields.setdefault(field, len(self._fields))
        if not self._cold or self._disk is None:
            return
        rows: list[tuple[int, bytes, int]] = []
        for seq, _, body in self._disk_rows(self._next, bodies=True):  # a chunk at a time
            rows += _index_rows(number, field, decode(body), seq)
            if len(rows) >= _CHUNK:
                self._disk.db.executemany(
                    "INSERT INTO idx (field, value, seq) VALUES (?, ?, ?)", rows
                )
                rows.clear()
        self._disk.db.executemany("INSERT INTO idx (field, value, seq) VALUES (?, ?, ?)", rows)

    def forget_cold_indexes(self) -> None:
        self._fields.clear()
        if self._disk is not None:
            self._disk.db.execute("DELETE FROM idx")

    def indexed(self, field: str, value: str, hot: list[Any]) -> Iterable[Any]:
        """The documents whose indexed `field` holds `value`, in store order: `hot`, the keys of
        those in memory (from the index in memory), merged with those on disk. In attach mode a
        list of the stored documents; in a read, an iterator that reads the disk as it goes, so
        that a read of thousands of old documents holds one chunk of them, not all."""
        lru = self._lru
        for key in hot:
            if key in lru:
                lru.move_to_end(key)
        number = self._fields.get(field)
        if not self._cold or number is None or self._disk is None:
            return [self._hot[key] for key in hot]
        found = self._indexed(number, _text(value), hot)
        return list(found) if self.attach else found

    def _indexed(self, number: int, value: bytes, hot: list[Any]) -> Iterator[Any]:
        seq = self._seq
        attach = self.attach
        in_memory = ((seq[k], k, None) for k in hot)
        for s, key, body in merge(in_memory, self._indexed_rows(number, value), key=_first):
            if body is None:
                doc = self._hot.get(key, _MISSING)
                if doc is _MISSING:  # left memory since (a read resumed after its operation)
                    row = self._row(key)
                    if row is None:
                        continue
                    doc = decode(row[1])
                yield doc
            else:
                doc = decode(body)
                yield self._bring_back(key, s, doc) if attach else doc

    def _indexed_rows(self, number: int, value: bytes) -> Iterator[tuple[int, Any, bytes]]:
        assert self._disk is not None
        db = self._disk.db
        after = -1
        while True:
            rows = db.execute(
                "SELECT d.seq, d.key, d.body FROM idx i JOIN docs d ON d.seq = i.seq "
                "WHERE i.field = ? AND i.value = ? AND i.seq > ? ORDER BY i.seq LIMIT ?",
                (number, value, after, _CHUNK),
            ).fetchall()
            for seq, key, body in rows:
                yield seq, _key_of(key), body
            if len(rows) < _CHUNK:
                return
            after = rows[-1][0]

    # ---- memory and disk

    @property
    def over(self) -> bool:
        """More documents in memory than allowed between operations."""
        return len(self._lru) > self.hot

    def settle(self) -> None:
        """At a safe point (no operation running): the least recently used documents leave
        memory until at most `hot` stay, up to MAX_BATCH below it (so that the next ones do
        not leave one write at a time)."""
        lru = self._lru
        target = max(0, self.hot - min(MAX_BATCH, max(1, self.hot // 8)) + 1)
        if len(lru) <= self.hot:
            return
        disk = self._disk
        if disk is None:
            disk = self._disk = _Disk(self._directory)
        docs, rows = [], []
        fields = self._fields_numbered()
        while len(lru) > target:
            key, _ = lru.popitem(last=False)
            doc = self._hot[key]
            try:
                body = encode(doc)
            except Exception:  # noqa: BLE001 - what cannot be written stays (out of the LRU)
                continue
            seq = self._seq.pop(key)
            del self._hot[key]
            docs.append((seq, _key_bytes(key), body))
            for number, field in fields:
                rows += _index_rows(number, field, doc, seq)
            self.indexes.forget(key)
        disk.db.executemany("INSERT INTO docs (seq, key, body) VALUES (?, ?, ?)", docs)
        disk.db.executemany("INSERT INTO idx (field, value, seq) VALUES (?, ?, ?)", rows)
        self._cold += len(docs)
        self._absent = _MISSING

    def _row(self, key: Any) -> tuple[int, bytes] | None:
        data = _key_bytes(key)
        if data is None or self._disk is None:
            return None
        row: tuple[int, bytes] | None = self._disk.db.execute(
            "SELECT seq, body FROM docs WHERE key = ?", (data,)
        ).fetchone()
        return row

    def _bring_back(self, key: Any, seq: int, doc: Any) -> Any:
        """The document `key` (read from disk at `seq`) goes back into memory, as the stored one."""
        self._remove_cold(seq, doc)
        self._hot[key] = doc
        self._seq[key] = seq
        self._lru[key] = None
        self._shuffled = True
        self.indexes.written(doc, key)
        return doc

    def _remove_cold(self, seq: int, doc: Any) -> None:
        assert self._disk is not None
        db = self._disk.db
        db.execute("DELETE FROM docs WHERE seq = ?", (seq,))
        rows = []
        for number, field in self._fields_numbered():
            rows += _index_rows(number, field, doc, seq)
        if rows:
            db.executemany("DELETE FROM idx WHERE field = ? AND value = ? AND seq = ?", rows)
        self._cold -= 1

    def _fields_numbered(self) -> list[tuple[int, str]]:
        return [(number, field) for field, number in self._fields.items()]


def _first(row: tuple[Any, ...]) -> Any:
    return row[0]


def _index_rows(number: int, field: str, doc: Any, seq: int) -> list[tuple[int, bytes, int]]:
    values = embedded_index.strings(doc.get(field)) if isinstance(doc, Mapping) else None
    if values is None:
        return []
    if type(values) is str:
        return [(number, _text(values), seq)]
    return [(number, _text(v), seq) for v in values]


class _Values(ValuesView[Any]):
    """`values()`: a scan in the mode of the operation in progress (what mongomock iterates)."""

    def __init__(self, documents: SpilledDocuments) -> None:
        super().__init__(documents)
        self._documents = documents

    def __iter__(self) -> Iterator[Any]:
        return self._documents.scan()


# ---- safe points


def operation(method: F, *, writes: bool) -> F:
    """`method` of a mongomock Collection as one operation on its collection's documents.

    A write runs in attach mode, and when the outermost write ends is a safe point (documents
    leave memory then). Reads need nothing (read mode is the default: they move nothing); a
    read that runs inside a write and only looks (a unique check) is wrapped with
    `writes=False`, so that its scan copies documents from disk instead of bringing them all
    back."""

    @functools.wraps(method)
    def write(self: Any, *args: Any, **kwargs: Any) -> Any:
        docs = self._store._documents
        if type(docs) is not SpilledDocuments:
            return method(self, *args, **kwargs)
        outer = docs._mode
        docs._mode = True
        try:
            return method(self, *args, **kwargs)
        finally:
            docs._mode = outer
            if outer is not True and len(docs._lru) > docs.hot:  # the outermost write ended
                docs.settle()

    @functools.wraps(method)
    def look(self: Any, *args: Any, **kwargs: Any) -> Any:
        docs = self._store._documents
        if type(docs) is not SpilledDocuments or not docs._cold:
            return method(self, *args, **kwargs)
        outer = docs._mode
        docs._mode = False
        try:
            return method(self, *args, **kwargs)
        finally:
            docs._mode = outer

    run = write if writes else look
    run._paysim_operation = method  # type: ignore[attr-defined]
    return run  # type: ignore[return-value]


#: outside any operation: read mode while the fast paths mark every write, attach mode otherwise
_ATTACH_BY_DEFAULT = [True]


def attach_by_default(on: bool) -> None:
    """False once every write is marked (`operation`); True with mongomock as shipped, where any
    access may be a write that changes a document in place (nothing leaves memory meanwhile:
    only marked writes end at safe points)."""
    _ATTACH_BY_DEFAULT[0] = on


def spills(store: Any) -> bool:
    """Whether a collection store's documents may be on disk now (a scan must stream them)."""
    docs = store._documents
    return type(docs) is SpilledDocuments and docs._cold > 0
