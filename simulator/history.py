"""Append-only JSONL history, streamed to disk so memory does not grow with run length.

Every line is one entry: `{"seq", "t" (virtual seconds since start), "type", ...}`, keys sorted,
UTF-8 (simulator/json_codec.py). Values must be JSON-serialisable and deterministic (no
wall-clock times, no random ids); a float that is not finite is written as JSON's null.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import IO, Any

from simulator import json_codec
from simulator.clock import SimClock

#: lines hashed and written together: one hash update and one write per batch, not per line
BATCH_LINES = 256


class History:
    def __init__(self, path: Path | None, clock: SimClock) -> None:
        self._clock = clock
        # binary: each line is encoded once, for the hash and the file
        self._file: IO[bytes] | None = path.open("wb") if path else None
        self._hash = hashlib.sha256()
        self._pending: list[bytes] = []
        self.seq = 0
        self.path = path

    def record(self, type: str, **fields: Any) -> dict[str, Any]:
        entry = {"seq": self.seq, "t": round(self._clock.elapsed(), 6), "type": type, **fields}
        pending = self._pending
        pending.append(json_codec.line(entry))
        if len(pending) >= BATCH_LINES:
            self.flush()
        self.seq += 1
        return entry

    def flush(self) -> None:
        """Hash and write the lines recorded since the last flush."""
        if self._pending:
            chunk = b"".join(self._pending)
            self._pending.clear()
            self._hash.update(chunk)
            if self._file is not None:
                self._file.write(chunk)

    def sha256(self) -> str:
        self.flush()
        return self._hash.hexdigest()

    def close(self) -> None:
        self.flush()
        if self._file is not None:
            self._file.close()
            self._file = None


def read_history(path: Path) -> list[dict[str, Any]]:
    with path.open("rb") as fh:
        return [json_codec.loads(line) for line in fh if line.strip()]
