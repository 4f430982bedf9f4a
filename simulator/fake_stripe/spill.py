"""Settled fake-Stripe state on disk, so that a long run's memory does not grow with its length.

A run's fake Stripe keeps every event, every idempotency key for 24 h and every Checkout Session
and PaymentIntent for the checkers. Most of it is settled: an event is immutable once emitted
(webhook delivery holds its own reference while it delivers), a saved idempotent response never
changes, and a session that is complete and paid, failed, or expired does not change again (the
only later change is a refund to its PaymentIntent, written back explicitly). `Spill` keeps those
in one SQLite file (stdlib sqlite3, no journal, no fsync: it is scratch space, unlinked as soon
as it is open where the OS allows, so nothing is left behind) and reads them back on demand; the live, still-changing objects stay in memory.

Nothing here changes what the fake answers or records: a spilled object reads back equal to what
was written (JSON of plain values, stored as UTF-8 bytes), in the same order. Only identity is lost (two reads give two
equal objects), which is why only settled objects are spilled and why the fake uses this only
when a run asks for it (`simulator.run`); tests that hold on to live objects get plain dicts.
"""

from __future__ import annotations

import contextlib
import heapq
import os
import sqlite3
import tempfile
from collections.abc import Iterator, MutableMapping, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any, Generic, TypeVar, overload

from simulator import json_codec
from simulator.fake_stripe.objects import CheckoutSession, PaymentIntent

#: rows fetched per round trip when iterating a table
_CHUNK = 512
#: rows written per round trip: appends wait in memory until this many (reads see them there)
_BATCH = 256

_encode = json_codec.compact
_decode = json_codec.loads

T = TypeVar("T", CheckoutSession, PaymentIntent)
R = TypeVar("R")

_SCHEMA = """
CREATE TABLE events (seq INTEGER PRIMARY KEY, id TEXT NOT NULL, body BLOB NOT NULL);
CREATE INDEX events_id ON events (id);
CREATE TABLE objects (
    kind TEXT NOT NULL, id TEXT NOT NULL, seq INTEGER NOT NULL, owner TEXT, body BLOB NOT NULL,
    PRIMARY KEY (kind, id)
);
CREATE INDEX objects_seq ON objects (kind, seq);
CREATE TABLE records (kind TEXT NOT NULL, seq INTEGER NOT NULL, body BLOB NOT NULL,
    PRIMARY KEY (kind, seq));
CREATE TABLE keys (kind TEXT NOT NULL, key TEXT NOT NULL, PRIMARY KEY (kind, key));
CREATE TABLE idempotency (
    scope TEXT PRIMARY KEY, fingerprint BLOB NOT NULL, created REAL NOT NULL,
    status INTEGER NOT NULL, body BLOB NOT NULL, headers BLOB NOT NULL
);
"""


class Spill:
    """One SQLite scratch file for a run's settled fake-Stripe state."""

    def __init__(self, directory: Path | None = None) -> None:
        fd, name = tempfile.mkstemp(prefix="paysim-spill-", suffix=".sqlite3", dir=directory)
        os.close(fd)
        self.path = Path(name)
        self._db = sqlite3.connect(name, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=OFF")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute("PRAGMA temp_store=MEMORY")
        self._db.execute("PRAGMA cache_size=-4096")  # KiB: a small, fixed page cache
        self._db.executescript(_SCHEMA)
        self._db.execute("BEGIN")  # one open transaction: nothing needs to survive a crash
        with contextlib.suppress(OSError):  # Windows: removed by close() instead
            self.path.unlink()  # the open connection keeps the file (POSIX)
        self.events = EventLog(self._db)
        self.idempotency = IdempotencyTable(self._db)

    @property
    def db(self) -> sqlite3.Connection:
        return self._db

    def close(self) -> None:
        try:
            self._db.close()
        finally:
            self.path.unlink(missing_ok=True)


# ---- events


class EventLog(Sequence[dict[str, Any]]):
    """Every event the fake emitted, in order, as a list of dicts reads (each read decodes).
    The newest events wait in memory and are written `_BATCH` at a time."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        self._len = 0
        self._pending: list[tuple[int, str, bytes]] = []

    def append(self, event: dict[str, Any]) -> None:
        self._pending.append((self._len, event["id"], _encode(event)))
        self._len += 1
        if len(self._pending) >= _BATCH:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            self._db.executemany("INSERT INTO events (seq, id, body) VALUES (?, ?, ?)", self._pending)
            self._pending.clear()

    def __len__(self) -> int:
        return self._len

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...
    @overload
    def __getitem__(self, index: slice) -> list[dict[str, Any]]: ...
    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self._len))]
        seq = _position(index, self._len, "event")
        written = self._len - len(self._pending)
        if seq >= written:
            return _decode(self._pending[seq - written][2])
        row = self._db.execute("SELECT body FROM events WHERE seq = ?", (seq,)).fetchone()
        return _decode(row[0])

    def __iter__(self) -> Iterator[dict[str, Any]]:
        self._flush()
        for (body,) in _chunks(self._db, "SELECT body FROM events ORDER BY seq", ()):
            yield _decode(body)

    def find(self, event_id: str) -> dict[str, Any] | None:
        self._flush()
        row = self._db.execute(
            "SELECT body FROM events WHERE id = ? ORDER BY seq LIMIT 1", (event_id,)
        ).fetchone()
        return None if row is None else _decode(row[0])


# ---- checkout sessions and payment intents


class ObjectTable(MutableMapping[str, T], Generic[T]):
    """A dict of live objects in memory, plus settled ones on disk, iterated in insertion order.

    `settle(id)` moves an object to disk (through a small write-behind buffer: the most recently
    settled wait in memory and are written `_BATCH` at a time); reading it later gives an equal
    copy. A settled object must not be changed in place afterwards without `save` (StripeState
    does this for refunds)."""

    def __init__(self, db: sqlite3.Connection, cls: type[T]) -> None:
        self._db = db
        self._cls = cls
        self._kind = cls.__name__
        self._fields = tuple(f.name for f in fields(cls))
        self._live: dict[str, T] = {}
        self._seq: dict[str, int] = {}  # live objects' insertion numbers
        self._next = 0
        self._settled = 0
        #: settled, not yet written: id -> (seq, owner, body)
        self._pending: dict[str, tuple[int, str | None, bytes]] = {}

    # -- the dict interface

    def __getitem__(self, key: str) -> T:
        obj = self._live.get(key)
        if obj is not None:
            return obj
        pending = self._pending.get(key)
        if pending is not None:
            return self._cls(*_decode(pending[2]))
        row = self._db.execute(
            "SELECT body FROM objects WHERE kind = ? AND id = ?", (self._kind, key)
        ).fetchone()
        if row is None:
            raise KeyError(key)
        return self._cls(*_decode(row[0]))

    def __setitem__(self, key: str, value: T) -> None:
        if key in self._live:
            self._live[key] = value
            return
        if self._on_disk(key):
            raise ValueError(f"{key} is settled; use save()")
        self._live[key] = value
        self._seq[key] = self._next
        self._next += 1

    def __delitem__(self, key: str) -> None:
        if key in self._live:
            del self._live[key]
            del self._seq[key]
            return
        if self._pending.pop(key, None) is None:
            cur = self._db.execute(
                "DELETE FROM objects WHERE kind = ? AND id = ?", (self._kind, key)
            )
            if cur.rowcount == 0:
                raise KeyError(key)
        self._settled -= 1

    def __contains__(self, key: object) -> bool:
        return key in self._live or (isinstance(key, str) and self._on_disk(key))

    def __len__(self) -> int:
        return len(self._live) + self._settled

    def __iter__(self) -> Iterator[str]:
        for _, key, _ in self._ordered():
            yield key

    def values(self) -> Iterator[T]:  # type: ignore[override]
        for _, key, body in self._ordered():
            yield self._live[key] if body is None else self._cls(*_decode(body))

    def items(self) -> Iterator[tuple[str, T]]:  # type: ignore[override]
        for _, key, body in self._ordered():
            yield key, (self._live[key] if body is None else self._cls(*_decode(body)))

    def __reversed__(self) -> Iterator[str]:
        return iter(list(self)[::-1])

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {self._kind}: {len(self._live)} live, {self._settled} settled>"
        )

    # -- spilling

    def live(self) -> dict[str, T]:
        """The objects still in memory (every open session is one of them)."""
        return self._live

    def settle(self, key: str, owner: str | None = None) -> None:
        """Move `key` to disk (no-op if it is there already)."""
        obj = self._live.pop(key, None)
        if obj is None:
            return
        self._pending[key] = (self._seq.pop(key), owner, self._body(obj))
        self._settled += 1
        if len(self._pending) >= _BATCH:
            self._flush()

    def save(self, obj: T) -> None:
        """Write back a settled object changed in place (no-op for a live one)."""
        key = obj.id
        if key in self._live:
            return
        pending = self._pending.get(key)
        if pending is not None:
            self._pending[key] = (pending[0], pending[1], self._body(obj))
            return
        self._db.execute(
            "UPDATE objects SET body = ? WHERE kind = ? AND id = ?",
            (self._body(obj), self._kind, key),
        )

    def owner(self, key: str) -> str | None:
        """The `owner` stored with a settled object (a payment intent's session)."""
        pending = self._pending.get(key)
        if pending is not None:
            return pending[1]
        row = self._db.execute(
            "SELECT owner FROM objects WHERE kind = ? AND id = ?", (self._kind, key)
        ).fetchone()
        return None if row is None else row[0]

    # -- helpers

    def _flush(self) -> None:
        if self._pending:
            self._db.executemany(
                "INSERT INTO objects (kind, id, seq, owner, body) VALUES (?, ?, ?, ?, ?)",
                [(self._kind, key, *row) for key, row in self._pending.items()],
            )
            self._pending.clear()

    def _body(self, obj: T) -> bytes:
        return _encode([getattr(obj, name) for name in self._fields])

    def _on_disk(self, key: str) -> bool:
        if not self._settled:
            return False
        if key in self._pending:
            return True
        row = self._db.execute(
            "SELECT 1 FROM objects WHERE kind = ? AND id = ?", (self._kind, key)
        ).fetchone()
        return row is not None

    def _ordered(self) -> Iterator[tuple[int, str, bytes | None]]:
        """(seq, id, body or None for a live object), in insertion order."""
        self._flush()
        live = [(seq, key, None) for key, seq in list(self._seq.items())]
        disk = _chunks(
            self._db,
            "SELECT seq, id, body FROM objects WHERE kind = ? ORDER BY seq",
            (self._kind,),
        )
        return heapq.merge(live, disk, key=lambda row: row[0])


# ---- the harness's append-only ledgers (fulfilment grants, receipts)


class RecordLog(Sequence[R], Generic[R]):
    """An append-only list of dataclass records, on disk (the newest `_BATCH` wait in memory);
    each read decodes a fresh one."""

    def __init__(self, db: sqlite3.Connection, kind: str, cls: type[R]) -> None:
        self._db = db
        self._kind = kind
        self._cls = cls
        self._fields = tuple(f.name for f in fields(cls))  # type: ignore[arg-type]
        self._len = 0
        self._pending: list[tuple[str, int, bytes]] = []

    def append(self, record: R) -> None:
        body = _encode([getattr(record, name) for name in self._fields])
        self._pending.append((self._kind, self._len, body))
        self._len += 1
        if len(self._pending) >= _BATCH:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            self._db.executemany("INSERT INTO records VALUES (?, ?, ?)", self._pending)
            self._pending.clear()

    def __len__(self) -> int:
        return self._len

    @overload
    def __getitem__(self, index: int) -> R: ...
    @overload
    def __getitem__(self, index: slice) -> list[R]: ...
    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self._len))]
        seq = _position(index, self._len, "record")
        written = self._len - len(self._pending)
        if seq >= written:
            return self._cls(*_decode(self._pending[seq - written][2]))
        row = self._db.execute(
            "SELECT body FROM records WHERE kind = ? AND seq = ?", (self._kind, seq)
        ).fetchone()
        return self._cls(*_decode(row[0]))

    def __iter__(self) -> Iterator[R]:
        self._flush()
        sql = "SELECT body FROM records WHERE kind = ? ORDER BY seq"
        for (body,) in _chunks(self._db, sql, (self._kind,)):
            yield self._cls(*_decode(body))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (list, tuple, RecordLog)):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]


class KeySet:
    """A set of strings on disk (`add`, `in`, `len`)."""

    def __init__(self, db: sqlite3.Connection, kind: str) -> None:
        self._db = db
        self._kind = kind
        self._len = 0

    def add(self, key: str) -> None:
        cur = self._db.execute("INSERT OR IGNORE INTO keys VALUES (?, ?)", (self._kind, key))
        self._len += cur.rowcount

    def __contains__(self, key: object) -> bool:
        row = self._db.execute(
            "SELECT 1 FROM keys WHERE kind = ? AND key = ?", (self._kind, key)
        ).fetchone()
        return row is not None

    def __len__(self) -> int:
        return self._len


# ---- idempotency keys


class IdempotencyTable:
    """Saved outcomes of idempotent requests, by scope: what `IdempotencyStore` keeps on disk
    (the newest `_BATCH` wait in memory)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        self._pending: dict[str, tuple[bytes, float, int, bytes, bytes]] = {}

    def put(
        self,
        scope: str,
        fingerprint: bytes,
        created: float,
        status: int,
        body: bytes,
        headers: dict[str, str],
    ) -> None:
        self._pending[scope] = (fingerprint, created, status, body, _encode(headers))
        if len(self._pending) >= _BATCH:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            self._db.executemany(
                "INSERT OR REPLACE INTO idempotency VALUES (?, ?, ?, ?, ?, ?)",
                [(scope, *row) for scope, row in self._pending.items()],
            )
            self._pending.clear()

    def get(self, scope: str) -> tuple[bytes, float, int, bytes, dict[str, str]] | None:
        row = self._pending.get(scope)
        if row is None:
            row = self._db.execute(
                "SELECT fingerprint, created, status, body, headers FROM idempotency "
                "WHERE scope = ?",
                (scope,),
            ).fetchone()
        if row is None:
            return None
        fingerprint, created, status, body, headers = row
        return bytes(fingerprint), created, status, bytes(body), _decode(headers)

    def delete(self, scope: str) -> None:
        self._pending.pop(scope, None)
        self._db.execute("DELETE FROM idempotency WHERE scope = ?", (scope,))

    def prune(self, before: float) -> None:
        """Forget outcomes created at or before `before`."""
        self._flush()
        self._db.execute("DELETE FROM idempotency WHERE created <= ?", (before,))

    def __len__(self) -> int:
        self._flush()
        return int(self._db.execute("SELECT COUNT(*) FROM idempotency").fetchone()[0])


def _position(index: int, length: int, what: str) -> int:
    """A list index (negative from the end) as a row number, or IndexError as a list raises."""
    seq = index + length if index < 0 else index
    if not 0 <= seq < length:
        raise IndexError(f"{what} index out of range")
    return seq


def _chunks(db: sqlite3.Connection, sql: str, args: tuple[Any, ...]) -> Iterator[Any]:
    cursor = db.execute(sql, args)
    while True:
        rows = cursor.fetchmany(_CHUNK)
        if not rows:
            return
        yield from rows
