"""What every checker shares: the violation value, the run's final facts, and the checker shape.

A checker reads only the history (streamed, one entry at a time), the final store and the
fakes' ledgers — never the engine's own counters or logs. Each one ends as `held`, `violated`
or `unknown` (the run never reached the state the invariant speaks about, e.g. quiescence).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

HELD, VIOLATED, UNKNOWN = "held", "violated", "unknown"


@dataclass(frozen=True)
class Violation:
    invariant: str
    detail: str
    at: float  # virtual seconds since the run started
    evidence: tuple[int, ...] = ()  # history seq numbers that prove it
    purchase_id: str | None = None
    session_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "invariant": self.invariant,
            "detail": self.detail,
            "at": self.at,
            "evidence": list(self.evidence),
        }
        if self.purchase_id:
            out["purchase_id"] = self.purchase_id
        if self.session_id:
            out["session_id"] = self.session_id
        return out


@dataclass
class FinalFacts:
    """The run's end state: the store as the engine left it, and what the fakes recorded."""

    final_state: dict[str, Any]
    ledgers: dict[str, Any]
    quiescent: bool
    end_t: float = 0.0
    _sessions: dict[str, dict[str, Any]] | None = field(default=None, repr=False)

    @property
    def purchases(self) -> list[dict[str, Any]]:
        return self.final_state.get("purchases", [])

    @property
    def programs(self) -> list[dict[str, Any]]:
        return self.final_state.get("programs", [])

    @property
    def sessions(self) -> dict[str, dict[str, Any]]:
        if self._sessions is None:
            self._sessions = {s["id"]: s for s in self.ledgers.get("sessions", [])}
        return self._sessions


@dataclass
class Outcome:
    invariant: str
    status: str
    violations: list[Violation]


class Checker(Protocol):
    name: str
    #: history entry types this checker wants to see
    types: frozenset[str]

    def observe(self, entry: dict[str, Any]) -> None: ...

    def finish(self, facts: FinalFacts) -> Outcome: ...


def outcome(name: str, violations: list[Violation], *, known: bool = True) -> Outcome:
    """Violations found are violations even in an unfinished run; silence is only `held` if known."""
    if violations:
        return Outcome(name, VIOLATED, violations)
    return Outcome(name, HELD if known else UNKNOWN, [])
