"""Append-only JSONL history, streamed to disk so memory does not grow with run length.

Every line is one entry: `{"seq", "t" (virtual seconds since start), "type", ...}`. Values must
be JSON-serialisable and deterministic (no wall-clock times, no random ids).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import IO, Any

from simulator.clock import SimClock

#: `json.dumps(entry, sort_keys=True, separators=(",", ":"), default=str)`, with the encoder built
#: once instead of at every call (the same bytes: ASCII only, keys sorted)
_encode = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str).encode


class History:
    def __init__(self, path: Path | None, clock: SimClock) -> None:
        self._clock = clock
        # binary: the lines are ASCII already, so they are encoded once, for the hash and the file
        self._file: IO[bytes] | None = path.open("wb") if path else None
        self._hash = hashlib.sha256()
        self.seq = 0
        self.path = path

    def record(self, type: str, **fields: Any) -> dict[str, Any]:
        entry = {"seq": self.seq, "t": round(self._clock.elapsed(), 6), "type": type, **fields}
        line = (_encode(entry) + "\n").encode()
        self._hash.update(line)
        if self._file is not None:
            self._file.write(line)
        self.seq += 1
        return entry

    def sha256(self) -> str:
        return self._hash.hexdigest()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def read_history(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]
