"""The fake's Stripe objects, and their JSON as the API and webhook events show them."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any


def _copied(metadata: dict[str, Any]) -> dict[str, Any]:
    """A copy the caller may change: Stripe's metadata is strings, so a shallow copy suffices."""
    if all(type(v) is str for v in metadata.values()):
        return dict(metadata)
    return copy.deepcopy(metadata)


@dataclass(slots=True)
class CheckoutSession:
    id: str
    status: str  # open | complete | expired
    payment_status: str  # unpaid | paid | no_payment_required
    payment_intent: str | None
    client_reference_id: str | None
    metadata: dict[str, str]
    expires_at: int
    amount_total: int
    currency: str
    url: str | None
    created: int
    livemode: bool = False
    mode: str = "payment"
    success_url: str | None = None
    cancel_url: str | None = None
    payment_intent_metadata: dict[str, str] = field(default_factory=dict)
    #: what Checkout offers the customer (the account's methods unless the session names some)
    payment_method_types: list[str] = field(default_factory=lambda: ["card", "us_bank_account"])

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "checkout.session",
            "amount_subtotal": self.amount_total,
            "amount_total": self.amount_total,
            "cancel_url": self.cancel_url,
            "client_reference_id": self.client_reference_id,
            "created": self.created,
            "currency": self.currency,
            "expires_at": self.expires_at,
            "livemode": self.livemode,
            "metadata": _copied(self.metadata),
            "mode": self.mode,
            "payment_intent": self.payment_intent,
            "payment_method_types": list(self.payment_method_types),
            "payment_status": self.payment_status,
            "status": self.status,
            "success_url": self.success_url,
            "url": self.url if self.status == "open" else None,
        }


@dataclass(slots=True)
class PaymentIntent:
    id: str
    status: str  # requires_payment_method | processing | succeeded | canceled
    amount: int
    currency: str
    metadata: dict[str, str]
    created: int
    livemode: bool = False
    last_payment_error: dict[str, Any] | None = None
    amount_refunded: int = 0  # kept on the charge in real Stripe; here for refund checks
    #: the method of the latest payment attempt (`card`, `us_bank_account`, ...); None before one
    payment_method_type: str | None = None

    @property
    def amount_received(self) -> int:
        return self.amount if self.status == "succeeded" else 0

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "payment_intent",
            "amount": self.amount,
            "amount_received": self.amount_received,
            "created": self.created,
            "currency": self.currency,
            "last_payment_error": copy.deepcopy(self.last_payment_error),
            # the charge of the latest attempt (API >= 2022-11-15): engines read the card from it
            "latest_charge": charge_id_of(self.id) if _attempted(self) else None,
            "livemode": self.livemode,
            "metadata": _copied(self.metadata),
            "status": self.status,
        }


def _attempted(intent: PaymentIntent) -> bool:
    return not (intent.status == "requires_payment_method" and intent.last_payment_error is None)


def charge_id_of(intent_id: str) -> str:
    """A PaymentIntent's charge id: one charge per intent, its latest attempt."""
    return "ch_" + intent_id.removeprefix("pi_")


def intent_id_of_charge(charge_id: str) -> str | None:
    return "pi_" + charge_id.removeprefix("ch_") if charge_id.startswith("ch_") else None


def charge_json(intent: PaymentIntent) -> dict[str, Any] | None:
    """The Charge Stripe shows for `intent`'s latest payment attempt (None before any attempt).
    A read-only view of the intent: the fake keeps no separate charge state."""
    error = intent.last_payment_error
    if not _attempted(intent):
        return None
    status = {"succeeded": "succeeded", "processing": "pending"}.get(intent.status, "failed")
    return {
        "id": charge_id_of(intent.id),
        "object": "charge",
        "amount": intent.amount,
        "amount_captured": intent.amount_received,
        "amount_refunded": intent.amount_refunded,
        "created": intent.created,
        "currency": intent.currency,
        "failure_code": error.get("code") if error else None,
        "failure_message": error.get("message") if error else None,
        "livemode": intent.livemode,
        "metadata": copy.deepcopy(intent.metadata),
        "paid": status == "succeeded",
        "payment_intent": intent.id,
        "payment_method_details": _method_details(intent.payment_method_type, error is not None),
        "refunded": 0 < intent.amount_received <= intent.amount_refunded,
        "status": status,
    }


#: what Checkout's test mode pays with: Stripe's test card for the outcome, a test bank account
_TEST_CARD = {
    "brand": "visa",
    "country": "US",
    "exp_month": 12,
    "exp_year": 2034,
    "funding": "credit",
}
_LAST4 = {"succeeded": "4242", "declined": "0002"}  # 4242 4242 4242 4242, 4000 0000 0000 0002
_BANK_LAST4 = frozenset(
    {"us_bank_account", "sepa_debit", "bacs_debit", "acss_debit", "au_becs_debit"}
)


def _method_details(method: str | None, declined: bool) -> dict[str, Any]:
    """A charge's `payment_method_details`: `{type, <type>: {...}}`, as Stripe nests them."""
    kind = method or "card"
    if kind == "card":
        card = {**_TEST_CARD, "last4": _LAST4["declined" if declined else "succeeded"]}
        return {"type": "card", "card": card}
    return {"type": kind, kind: {"last4": "6789"} if kind in _BANK_LAST4 else {}}


@dataclass(slots=True)
class Refund:
    id: str
    payment_intent: str
    amount: int
    created: int
    currency: str = "usd"
    status: str = "succeeded"
    metadata: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "refund",
            "amount": self.amount,
            "created": self.created,
            "currency": self.currency,
            "metadata": _copied(self.metadata),
            "payment_intent": self.payment_intent,
            "status": self.status,
        }
