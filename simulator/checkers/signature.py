"""signature_enforced: a forged, stale or unsigned webhook gets 400 and changes nothing.

The harness probes every run: it posts forged copies of real events (wrong secret, stale
timestamp, no header, a tampered body, a correctly signed non-event) and records each answer as
`probe.forged`; any store write made under a probe's request id is a change it must not make.
The adversary (simulator/adversary.py, when a scenario enables it) records its header tricks,
replays, tampered bodies and correctly signed bodies of the wrong shape (type confusion,
operator injection, deep nesting, huge integers and bodies) the same way: each must get 400
and write nothing.
"""

from __future__ import annotations

from typing import Any

from simulator.checkers.base import FinalFacts, Outcome, Violation, outcome

NAME = "signature_enforced"


class SignatureEnforced:
    name = NAME
    types = frozenset({"probe.forged", "store.write", "fulfilment"})

    def __init__(self) -> None:
        self.probes = 0
        self.found: list[Violation] = []

    def observe(self, entry: dict[str, Any]) -> None:
        if entry["type"] == "probe.forged":
            if entry.get("status") == "unreachable":
                return  # the instance was down: no engine judged this forgery
            self.probes += 1
            if entry.get("status") != 400:
                self.found.append(
                    Violation(
                        NAME,
                        f"forged webhook ({entry['variant']}) for {entry.get('event_id')} got {entry.get('status')}, not 400",
                        at=entry["t"],
                        evidence=(entry["seq"],),
                        session_id=entry.get("session_id"),
                    )
                )
        elif str(entry.get("req") or "").startswith("probe"):
            change = (
                f"a fulfilment of {entry.get('purchase_id')}"
                if entry["type"] == "fulfilment"
                else f"a write to {entry.get('coll')} ({entry.get('op')} {entry.get('id')})"
            )
            self.found.append(
                Violation(
                    NAME,
                    f"forged webhook {entry['req']} caused {change}",
                    at=entry["t"],
                    evidence=(entry["seq"],),
                )
            )

    def finish(self, facts: FinalFacts) -> Outcome:
        return outcome(NAME, self.found, known=self.probes > 0)
