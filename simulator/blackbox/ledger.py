"""What the fake Stripe did in a black-box run, kept for inspection: every API request and every
webhook delivery attempt with the answer the service gave.

Public API:

    ledger = Ledger(clock)                 # a recorder: pass `ledger.record` as the fake's `record`
    ledger.record("stripe.request", ...)   # same signature as History.record
    ledger.deliveries(event_id)            # [{"attempt", "duplicate", "at", "status", ...}]
    ledger.snapshot(fake, delivery)        # JSON-ready dict (what GET /_paysim/ledger serves)

A black-box driver in the same process reads the FakeStripe's own ledgers (`fake.sessions`,
`fake.payment_intents`, `fake.refunds`, `fake.events`) directly; this adds what only the record
stream knows: requests with their faults, and delivery attempts with status codes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from simulator.clock import SimClock

if TYPE_CHECKING:
    from simulator.fake_stripe import FakeStripe, WebhookDelivery

#: requests kept (the oldest are dropped past it, and counted); a black-box run is small
MAX_REQUESTS = 100_000


class Ledger:
    def __init__(self, clock: SimClock, forward: Callable[..., Any] | None = None) -> None:
        self._clock = clock
        self._forward = forward
        self.requests: list[dict[str, Any]] = []
        self.dropped_requests = 0
        self.faults: list[dict[str, Any]] = []
        self._attempts: dict[str, list[dict[str, Any]]] = {}
        self._outcomes: dict[str, str] = {}

    def record(self, type: str, **fields: Any) -> None:
        """Keep what the ledger shows, then pass the record on (e.g. to a driver's history)."""
        at = round(self._clock.now(), 6)
        if type == "stripe.request":
            if len(self.requests) >= MAX_REQUESTS:
                del self.requests[0]
                self.dropped_requests += 1
            self.requests.append({"at": at, **fields})
        elif type == "webhook.attempt":
            self._attempts.setdefault(fields["event_id"], []).append(
                {
                    "attempt": fields["attempt"],
                    "duplicate": fields["duplicate"],
                    "overlapping": fields["overlapping"],
                    "at": at,
                    "status": None,
                    "error": None,
                    "timed_out": False,
                    "late": False,
                    "answered_at": None,
                }
            )
        elif type == "webhook.response":
            self._answer(fields, at)
        elif type in ("webhook.acknowledged", "webhook.given_up"):
            self._outcomes[fields["event_id"]] = type.removeprefix("webhook.")
        elif type.startswith("fault."):
            self.faults.append({"at": at, "type": type, **fields})
        if self._forward is not None:
            self._forward(type, **fields)

    def _answer(self, fields: dict[str, Any], at: float) -> None:
        attempts = self._attempts.get(fields["event_id"], [])
        for attempt in attempts:
            if attempt["attempt"] == fields["attempt"] and attempt["duplicate"] == fields.get(
                "duplicate"
            ):
                if fields["status"] == "timeout":
                    if attempt["timed_out"]:
                        continue
                    attempt["timed_out"] = True
                    return
                if attempt["answered_at"] is not None:
                    continue
                attempt["status"] = fields["status"] if fields.get("error") is None else None
                attempt["error"] = fields.get("error")
                attempt["late"] = bool(fields.get("late"))
                attempt["answered_at"] = at
                return

    def deliveries(self, event_id: str) -> list[dict[str, Any]]:
        """Every attempt to deliver `event_id`, in the order they started."""
        return [dict(a) for a in self._attempts.get(event_id, [])]

    def outcome(self, event_id: str) -> str | None:
        """Either "acknowledged" or "given_up"; None while Stripe is still trying."""
        return self._outcomes.get(event_id)

    def snapshot(self, fake: FakeStripe, delivery: WebhookDelivery | None = None) -> dict[str, Any]:
        return {
            "sessions": [s.to_json() for s in fake.sessions.values()],
            "payment_intents": [pi.to_json() for pi in fake.payment_intents.values()],
            "refunds": [r.to_json() for r in fake.refunds],
            "events": [
                {
                    "event": event,
                    "deliveries": self.deliveries(event["id"]),
                    "outcome": self.outcome(event["id"]),
                }
                for event in fake.events
            ],
            "requests": list(self.requests),
            "dropped_requests": self.dropped_requests,
            "faults": list(self.faults),
            "webhooks": asdict(delivery.stats) if delivery is not None else None,
        }
