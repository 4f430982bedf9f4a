"""Which faults are on at a point of the history, for checkers that do not judge what happened
wholly under the nemesis (an event Stripe gave up on while every delivery was failed for it)."""

from __future__ import annotations

from typing import Any

#: the history entries that move the window
TYPES = frozenset({"fault.start", "fault.end", "liveness.start"})


class FaultsOn:
    """Faults on now, by (kind, target): a spec may overlap another of its kind."""

    def __init__(self) -> None:
        self._on: dict[tuple[Any, Any], int] = {}

    def __bool__(self) -> bool:
        return bool(self._on)

    def observe(self, entry: dict[str, Any]) -> None:
        kind = entry["type"]
        if kind == "liveness.start":  # every fault is off from here on
            self._on.clear()
            return
        key = (entry.get("kind"), entry.get("target"))
        if kind == "fault.start":
            self._on[key] = self._on.get(key, 0) + 1
        elif self._on.get(key, 0) > 1:
            self._on[key] -= 1
        else:
            self._on.pop(key, None)
