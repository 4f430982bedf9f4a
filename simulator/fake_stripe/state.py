"""Stripe's side of the world: sessions, payment intents, refunds and the event stream.

Every mutation is synchronous (no await inside), so each is atomic under the event loop, as one
Stripe API call or one customer action is atomic at Stripe. Each state change emits the events
Stripe would and is recorded for the history.

Memory: once a run attaches a `Spill` (`spill_to`), events go to disk as they are emitted, and a
session that is settled (complete and paid, async payment failed, or expired: nothing but a
refund to its PaymentIntent changes it afterwards) moves to disk with its PaymentIntent, so what
stays in memory is the sessions still in play. Without one, everything stays in plain dicts.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping, MutableSequence
from typing import Any, cast

import stripe

from simulator.clock import SimClock
from simulator.fake_stripe.objects import CheckoutSession, PaymentIntent, Refund
from simulator.fake_stripe.spill import EventLog, ObjectTable, Spill
from simulator.ids import SequentialIds

API_VERSION: str = stripe.api_version  # the version this SDK pins
CHECKOUT_URL = "https://checkout.stripe.sim/c/pay/"

DECLINED = {
    "type": "card_error",
    "code": "card_declined",
    "decline_code": "generic_decline",
    "message": "Your card was declined.",
}
ASYNC_FAILED = {
    "type": "card_error",
    "code": "payment_intent_payment_attempt_failed",
    "message": "The payment failed.",
}

Recorder = Callable[..., Any]
Subscriber = Callable[[dict[str, Any]], None]


def no_record(type: str, **fields: Any) -> None:
    return None


class StripeState:
    def __init__(self, clock: SimClock, *, live_mode: bool, record: Recorder | None) -> None:
        self.clock = clock
        self.live_mode = live_mode
        self.record: Recorder = record or no_record
        #: where a session's `url` points: the hosted Checkout page (black-box mode serves one)
        self.checkout_url = CHECKOUT_URL
        self.sessions: MutableMapping[str, CheckoutSession] = {}
        self.payment_intents: MutableMapping[str, PaymentIntent] = {}
        self.refunds: list[Refund] = []
        self.events: MutableSequence[dict[str, Any]] | EventLog = []
        #: events not yet delivered to the endpoint (pending or given up), oldest first: id ->
        #: (created, position in `events`), so a listing filters by time before it reads an
        #: event. What `GET /v1/events?delivery_success=false` lists; only delivery failures
        #: stay, so it is small however long the run
        self.undelivered: dict[str, tuple[int, int]] = {}
        self.spill: Spill | None = None
        self.ids = SequentialIds("sim_")
        self._subscribers: list[Subscriber] = []
        self._session_of_intent: dict[str, str] = {}
        #: hooks for the expiry sweeper: a session opened, a session left `open`
        self.on_open: Callable[[CheckoutSession], None] = lambda session: None
        self.on_closed: Callable[[str], None] = lambda session_id: None

    def now(self) -> int:
        return int(self.clock.now())

    def spill_to(self, spill: Spill) -> None:
        """Keep events and settled sessions (with their intents) in `spill` from now on; call
        before the first request."""
        if self.sessions or self.payment_intents or self.events:
            raise RuntimeError("spill_to must be called before any object exists")
        self.spill = spill
        self.events = spill.events
        self.sessions = ObjectTable(spill.db, CheckoutSession)
        self.payment_intents = ObjectTable(spill.db, PaymentIntent)

    def open_sessions(self) -> int:
        """Sessions still `open` (a settled one never is, so only live ones are looked at)."""
        sessions = self.sessions
        live = sessions.live() if isinstance(sessions, ObjectTable) else sessions
        return sum(1 for s in live.values() if s.status == "open")

    def find_event(self, event_id: str) -> dict[str, Any] | None:
        events = self.events
        if isinstance(events, EventLog):
            return events.find(event_id)
        return next((e for e in events if e["id"] == event_id), None)

    # ---- checkout sessions

    def create_session(
        self,
        *,
        amount_total: int,
        currency: str,
        expires_at: int,
        metadata: dict[str, str],
        client_reference_id: str | None,
        success_url: str | None,
        cancel_url: str | None,
        payment_intent_metadata: dict[str, str],
        payment_method_types: tuple[str, ...] | None = None,
    ) -> CheckoutSession:
        session_id = self.ids.new_id("cs")
        session = CheckoutSession(
            id=session_id,
            status="open",
            payment_status="unpaid",
            payment_intent=None,
            client_reference_id=client_reference_id,
            metadata=metadata,
            expires_at=expires_at,
            amount_total=amount_total,
            currency=currency,
            url=self.checkout_url + session_id,
            created=self.now(),
            livemode=self.live_mode,
            success_url=success_url,
            cancel_url=cancel_url,
            payment_intent_metadata=payment_intent_metadata,
        )
        if payment_method_types:
            session.payment_method_types = list(payment_method_types)
        self.sessions[session_id] = session
        self._record_session(session, "created")
        self.on_open(session)
        return session

    def expire_session(self, session: CheckoutSession, *, reason: str) -> None:
        """open -> expired (by the API or by time); the caller checks that it is open."""
        session.status = "expired"
        self._record_session(session, f"expired:{reason}")
        self.on_closed(session.id)
        self.emit("checkout.session.expired", session.to_json())
        self._settle(session)

    # ---- payments (driven by the customer, see customer.py)

    def intent_for(self, session: CheckoutSession) -> PaymentIntent:
        """The session's PaymentIntent, created at the first payment attempt (API >= 2022-08-01)."""
        if session.payment_intent is not None:
            return self.payment_intents[session.payment_intent]
        intent = PaymentIntent(
            id=self.ids.new_id("pi"),
            status="requires_payment_method",
            amount=session.amount_total,
            currency=session.currency,
            metadata=dict(session.payment_intent_metadata),
            created=self.now(),
            livemode=self.live_mode,
        )
        self.payment_intents[intent.id] = intent
        self._session_of_intent[intent.id] = session.id
        session.payment_intent = intent.id
        return intent

    def card_succeeded(self, session: CheckoutSession) -> None:
        intent = self.intent_for(session)
        intent.payment_method_type = "card"
        self._set_intent(intent, "succeeded", None)
        session.status, session.payment_status = "complete", "paid"
        self._record_session(session, "completed")
        self.on_closed(session.id)
        self.emit("payment_intent.succeeded", intent.to_json())
        self.emit("checkout.session.completed", session.to_json())
        self._settle(session)

    def card_declined(self, session: CheckoutSession) -> None:
        """The session stays open: the customer may try another card."""
        intent = self.intent_for(session)
        intent.payment_method_type = "card"
        self._set_intent(intent, "requires_payment_method", dict(DECLINED))
        self.emit("payment_intent.payment_failed", intent.to_json())

    def async_payment_started(self, session: CheckoutSession, method: str) -> None:
        """A delayed method (bank debit): the session completes unpaid, the money comes later."""
        intent = self.intent_for(session)
        intent.payment_method_type = method
        self._set_intent(intent, "processing", None)
        session.status, session.payment_status = "complete", "unpaid"
        self._record_session(session, "completed_unpaid")
        self.on_closed(session.id)
        self.emit("checkout.session.completed", session.to_json())

    def async_payment_settled(self, session: CheckoutSession, *, succeeded: bool) -> None:
        intent = self.intent_for(session)
        if succeeded:
            self._set_intent(intent, "succeeded", None)
            session.payment_status = "paid"
            self._record_session(session, "async_paid")
            self.emit("payment_intent.succeeded", intent.to_json())
            self.emit("checkout.session.async_payment_succeeded", session.to_json())
        else:
            self._set_intent(intent, "requires_payment_method", dict(ASYNC_FAILED))
            self._record_session(session, "async_failed")
            self.emit("payment_intent.payment_failed", intent.to_json())
            self.emit("checkout.session.async_payment_failed", session.to_json())
        self._settle(session)

    # ---- refunds

    def refund(self, intent: PaymentIntent, amount: int, metadata: dict[str, str]) -> Refund:
        """The caller checks that `amount` is refundable."""
        refund = Refund(
            id=self.ids.new_id("re"),
            payment_intent=intent.id,
            amount=amount,
            created=self.now(),
            currency=intent.currency,
            metadata=metadata,
        )
        intent.amount_refunded += amount
        if isinstance(self.payment_intents, ObjectTable):
            self.payment_intents.save(intent)  # a settled intent is a copy: write it back
        self.refunds.append(refund)
        self.record(
            "stripe.refund",
            id=refund.id,
            payment_intent=intent.id,
            amount=amount,
            session_id=self._session_of(intent.id),
        )
        return refund

    # ---- events

    def subscribe(self, callback: Subscriber) -> None:
        self._subscribers.append(callback)

    def emit(self, type: str, obj: dict[str, Any]) -> dict[str, Any]:
        event = {
            "id": self.ids.new_id("evt"),
            "object": "event",
            "api_version": API_VERSION,
            "created": self.now(),
            "data": {"object": obj},
            "livemode": self.live_mode,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "type": type,
        }
        self.undelivered[event["id"]] = (event["created"], len(self.events))
        self.events.append(event)
        self.record(
            "stripe.event",
            id=event["id"],
            event_type=type,
            object_id=obj["id"],
            session_id=self.session_id_of(event),
        )
        for callback in list(self._subscribers):
            callback(event)
        return event

    def delivered(self, event_id: str) -> None:
        """The endpoint acknowledged `event_id` (a 2xx in time): it is no longer pending."""
        self.undelivered.pop(event_id, None)

    def session_id_of(self, event: dict[str, Any]) -> str | None:
        """The Checkout Session an event is about (payment intents map back to theirs)."""
        obj = event["data"]["object"]
        if obj.get("object") == "checkout.session":
            return str(obj["id"])
        return self._session_of(str(obj.get("id")))

    # ---- helpers

    def _session_of(self, intent_id: str) -> str | None:
        session_id = self._session_of_intent.get(intent_id)
        if session_id is None and isinstance(self.payment_intents, ObjectTable):
            session_id = self.payment_intents.owner(intent_id)
        return session_id

    def _settle(self, session: CheckoutSession) -> None:
        """`session` will not change again (but for a refund): move it and its intent to disk."""
        if self.spill is None:
            return
        sessions = cast(ObjectTable[CheckoutSession], self.sessions)
        intents = cast(ObjectTable[PaymentIntent], self.payment_intents)
        if session.payment_intent is not None:
            intents.settle(session.payment_intent, owner=session.id)
            self._session_of_intent.pop(session.payment_intent, None)
        sessions.settle(session.id)

    def _set_intent(self, intent: PaymentIntent, status: str, error: dict[str, Any] | None) -> None:
        intent.status, intent.last_payment_error = status, error
        self.record(
            "stripe.payment_intent",
            id=intent.id,
            status=status,
            session_id=self._session_of(intent.id),
            error=error["code"] if error else None,
        )

    def _record_session(self, session: CheckoutSession, action: str) -> None:
        self.record(
            "stripe.session",
            id=session.id,
            action=action,
            status=session.status,
            payment_status=session.payment_status,
            payment_intent=session.payment_intent,
            expires_at=session.expires_at,
        )
