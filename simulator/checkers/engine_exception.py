"""no_engine_exception: no exception escapes an engine method, but the errors its boundary declares.

An escaped exception is a 500 the engine did not choose: for a webhook, Stripe retries whatever
was half done; for a create, the customer sees an error page whatever happened. The harness
records each one as `engine.exception` (simulator/topology.py) with its request, type, message
and frames, whichever method it escaped: `create_purchase` and `cancel_purchase` may raise the
declared `PurchaseError`s (limit reached, busy, ...), nothing else may raise anything.
"""

from __future__ import annotations

from typing import Any

from simulator.checkers.base import FinalFacts, Outcome, Violation, outcome

NAME = "no_engine_exception"


class NoEngineException:
    name = NAME
    types = frozenset({"engine.exception"})

    def __init__(self) -> None:
        self.found: list[Violation] = []

    def observe(self, entry: dict[str, Any]) -> None:
        where = (entry.get("traceback") or ["?"])[-1]
        self.found.append(
            Violation(
                NAME,
                f"{entry.get('error')} escaped {entry.get('method', 'the engine')} on "
                f"{entry.get('instance')} "
                f"(request {entry.get('request')}, at {where}): {entry.get('message')}",
                at=entry["t"],
                evidence=(entry["seq"],),
            )
        )

    def finish(self, facts: FinalFacts) -> Outcome:
        return outcome(NAME, self.found)
