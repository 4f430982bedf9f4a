"""webhooks_acknowledged (liveness): once faults stop, every event is acknowledged in the retry window."""

from __future__ import annotations

from typing import Any

from simulator.checkers.base import FinalFacts, Outcome, Violation, outcome

NAME = "webhooks_acknowledged"


class WebhooksAcknowledged:
    name = NAME
    types = frozenset(
        {"stripe.event", "webhook.acknowledged", "webhook.given_up", "webhook.response"}
    )

    def __init__(self) -> None:
        self.open: dict[str, dict[str, Any]] = {}
        self.last_response: dict[str, dict[str, Any]] = {}
        self.given_up: list[Violation] = []

    def observe(self, entry: dict[str, Any]) -> None:
        kind = entry["type"]
        if kind == "stripe.event":
            self.open[entry["id"]] = entry
        elif kind == "webhook.acknowledged":
            self.open.pop(entry["event_id"], None)
        elif kind == "webhook.response":
            self.last_response[entry["event_id"]] = entry
        else:
            self.open.pop(entry["event_id"], None)
            last = self.last_response.get(entry["event_id"], {})
            evidence = tuple(x for x in (entry["seq"], last.get("seq")) if x is not None)
            self.given_up.append(
                Violation(
                    NAME,
                    f"{entry.get('event_type')} {entry['event_id']} never acknowledged: Stripe gave up after "
                    f"{entry.get('attempts')} attempts (last answer: {last.get('status')})",
                    at=entry["t"],
                    evidence=evidence,
                    session_id=entry.get("session_id"),
                )
            )

    def finish(self, facts: FinalFacts) -> Outcome:
        return outcome(NAME, self.given_up, known=facts.quiescent and not self.open)
