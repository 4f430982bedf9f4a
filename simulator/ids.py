"""Deterministic ids for engines and fakes: a counter per prefix, never uuid or ObjectId."""

from __future__ import annotations

from collections import defaultdict


class SequentialIds:
    def __init__(self, namespace: str = "") -> None:
        self._namespace = namespace
        self._next: defaultdict[str, int] = defaultdict(int)

    def new_id(self, prefix: str) -> str:
        self._next[prefix] += 1
        return f"{prefix}_{self._namespace}{self._next[prefix]:06d}"
