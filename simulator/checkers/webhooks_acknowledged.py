"""webhooks_acknowledged (liveness): once faults stop, every event is acknowledged in the retry window.

Also: an event that can never succeed (the adversary's `adversary.attack` expecting `ack`: a
type the engine ignores, a completion for a purchase that does not exist) is acknowledged with
a 2xx at once, not failed for Stripe to retry for three days.

"Once faults stop" is the precondition: an event Stripe gives up on while a fault is still on
(between a `fault.start` and its `fault.end`, before `liveness.start`) is not judged. Its whole
retry window lay under the nemesis (e.g. `webhook_failures` at probability 1 for longer than
three days answers 500 before the engine ever sees the event), so its failure says nothing about
the engine. An event with even one attempt after the faults stopped is judged as usual. Nor is
an attack the adversary could post only to instances that were down or crashed mid-request
(`unreachable`), as `signature_enforced` does not judge such a forgery.
"""

from __future__ import annotations

from typing import Any

from simulator.checkers import faults_on
from simulator.checkers.base import FinalFacts, Outcome, Violation, outcome

NAME = "webhooks_acknowledged"


class WebhooksAcknowledged:
    name = NAME
    types = frozenset(
        {
            "stripe.event",
            "webhook.acknowledged",
            "webhook.given_up",
            "webhook.response",
            "adversary.attack",
            *faults_on.TYPES,
        }
    )

    def __init__(self) -> None:
        self.open: dict[str, dict[str, Any]] = {}
        self.last_response: dict[str, dict[str, Any]] = {}
        self.given_up: list[Violation] = []
        self.faults_on = faults_on.FaultsOn()

    def observe(self, entry: dict[str, Any]) -> None:
        kind = entry["type"]
        if kind in faults_on.TYPES:
            self.faults_on.observe(entry)
        elif kind == "stripe.event":
            self.open[entry["id"]] = entry
        elif kind == "webhook.acknowledged":
            self.open.pop(entry["event_id"], None)
        elif kind == "webhook.response":
            self.last_response[entry["event_id"]] = entry
        elif kind == "adversary.attack":
            status = entry.get("status")
            if status == "unreachable":
                return  # every attempt met a down or crashing instance: no engine judged it
            if entry.get("expect") == "ack" and not (isinstance(status, int) and status < 300):
                self.given_up.append(
                    Violation(
                        NAME,
                        f"{entry.get('variant')} ({entry.get('family')}) can never succeed but "
                        f"got {status}, not 2xx: Stripe would retry it for three days",
                        at=entry["t"],
                        evidence=(entry["seq"],),
                        session_id=entry.get("session_id"),
                    )
                )
        else:
            self.open.pop(entry["event_id"], None)
            if self.faults_on:
                return  # given up under the nemesis: outside the invariant (see the docstring)
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
