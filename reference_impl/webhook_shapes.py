"""The shapes a webhook's Checkout Session must have before the engine reads a single field.

A correctly signed body is still data from outside: an API version change, a Stripe bug or a
test tool can send a missing id, a number where a string belongs, an object where an id belongs
(`{"$gt": ""}` in a store query is operator injection), a metadata that is a list. Every field
the engine reads is checked here and copied into a fresh dict of exactly the expected types;
the engine never touches the raw object. Anything else is `InvalidWebhook` (400, nothing written).

References to the engine's own objects are strings of the shapes it issues (`pur_...`, Stripe's
`cs_...`/`pi_...`); a well-typed reference of another shape (a Payment Link's own
`client_reference_id`) names nothing of ours and reads as absent.
"""

from __future__ import annotations

import re
from typing import Any

from reference_impl.webhook_signature import InvalidWebhook

SESSION_ID = re.compile(r"cs_[A-Za-z0-9_]{1,250}")
PAYMENT_INTENT_ID = re.compile(r"pi_[A-Za-z0-9_]{1,250}")
#: what the engine's `ids.new_id("pur")` issues (and preloaded data of earlier releases)
PURCHASE_ID = re.compile(r"pur_[A-Za-z0-9_]{1,120}")
CURRENCY = re.compile(r"[a-z]{3}")
#: Stripe's largest charge is 8 digits in the smallest unit; a bound well above it
MAX_AMOUNT = 10**12
_TOKEN = re.compile(r"[a-z_]{1,40}")


def checkout_session(obj: Any) -> dict[str, Any]:
    """The fields the engine reads from a `checkout.session` object, each of its exact type."""
    if not isinstance(obj, dict):
        raise InvalidWebhook("data.object is not an object")
    session_id = obj.get("id")
    if not _matches(SESSION_ID, session_id):
        raise InvalidWebhook("data.object.id is not a Checkout Session id")
    metadata = obj.get("metadata")
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise InvalidWebhook("data.object.metadata is not an object")
    return {
        "id": session_id,
        "status": _token(obj, "status"),
        "payment_status": _token(obj, "payment_status"),
        "mode": _token(obj, "mode"),
        "payment_intent": _reference(
            obj.get("payment_intent"), PAYMENT_INTENT_ID, "payment_intent"
        ),
        "client_reference_id": _reference(
            obj.get("client_reference_id"), PURCHASE_ID, "client_reference_id"
        ),
        "metadata": {
            "purchase_id": _reference(
                metadata.get("purchase_id"), PURCHASE_ID, "metadata.purchase_id"
            )
        },
        "amount_total": _amount(obj.get("amount_total")),
        "currency": _currency(obj.get("currency")),
        "expires_at": _timestamp(obj.get("expires_at")),
    }


def payment_intent(obj: Any) -> dict[str, Any]:
    """The fields an engine may read from a `payment_intent` object, each of its exact type."""
    if not isinstance(obj, dict):
        raise InvalidWebhook("data.object is not an object")
    if not _matches(PAYMENT_INTENT_ID, obj.get("id")):
        raise InvalidWebhook("data.object.id is not a PaymentIntent id")
    metadata = obj.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise InvalidWebhook("data.object.metadata is not an object")
    return {
        "id": obj["id"],
        "status": _token(obj, "status"),
        "metadata": {
            "purchase_id": _reference(
                metadata.get("purchase_id"), PURCHASE_ID, "metadata.purchase_id"
            )
        },
    }


def event_object_of(event: dict[str, Any]) -> dict[str, Any]:
    """The validated object of a verified event, by the object its type names."""
    shape = payment_intent if event["type"].startswith("payment_intent.") else checkout_session
    return shape(event["data"]["object"])


def session_id_or_none(value: Any) -> str | None:
    """`value` if it is a Checkout Session id (a success page's query string is hostile too)."""
    return value if _matches(SESSION_ID, value) else None


def _matches(pattern: re.Pattern[str], value: Any) -> bool:
    return isinstance(value, str) and pattern.fullmatch(value) is not None


def _token(obj: dict[str, Any], name: str) -> str | None:
    value = obj.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidWebhook(f"data.object.{name} is not a string")
    return value if _TOKEN.fullmatch(value) else "unrecognised"


def _reference(value: Any, pattern: re.Pattern[str], name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 5000:
        raise InvalidWebhook(f"data.object.{name} is not a string id")
    return value if pattern.fullmatch(value) else None


def _amount(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_AMOUNT:
        raise InvalidWebhook("data.object.amount_total is not an amount")
    return value


def _timestamp(value: Any) -> int | None:
    """Unix seconds; anything else reads as absent (only ever compared with the engine's own)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_AMOUNT:
        return None
    return value


def _currency(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 16:
        raise InvalidWebhook("data.object.currency is not a currency code")
    return value.lower() if CURRENCY.fullmatch(value.lower()) else "unrecognised"
