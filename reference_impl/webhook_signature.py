"""Webhook verification: stripe's own HMAC check, with the staleness check on the engine's clock.

`stripe.Webhook.construct_event` is `WebhookSignature.verify_header` + `json.loads` + a
`StripeObject` tree. The engine wants plain JSON (stripe>=16 objects are not dicts), so it calls
the SDK's verification itself and stops there: the object tree, built and flattened again, was
most of a webhook's cost. `construct_event` checks staleness against the wall clock
(`time.time()`), which would break virtual time, so the HMAC is checked by the SDK with tolerance
off and the timestamp against `clock.now()` here. Future timestamps pass, as in the SDK.
"""

from __future__ import annotations

import json
from typing import Any

import stripe

from reference_impl.ports import Clock


class InvalidWebhook(Exception):
    """Bad, missing or stale signature, or a body that is not a Stripe event: answer 400."""


def verify_event(
    payload: bytes, signature_header: str | None, secret: str, *, clock: Clock, tolerance: float
) -> dict[str, Any]:
    """The verified event as plain JSON."""
    try:
        text = payload.decode("utf-8")
        stripe.WebhookSignature.verify_header(text, signature_header, secret, tolerance=0)
        body = json.loads(text)
    except (stripe.SignatureVerificationError, ValueError, UnicodeDecodeError) as exc:
        raise InvalidWebhook(str(exc)) from exc
    assert signature_header is not None  # verify_header rejects a missing header
    timestamp = _timestamp(signature_header)
    if timestamp < clock.now() - tolerance:
        raise InvalidWebhook(f"stale signature: t={timestamp} older than {tolerance:.0f}s")
    if not isinstance(body, dict):
        raise InvalidWebhook("body is not a Stripe event")
    if not isinstance(body.get("type"), str) or not isinstance(body.get("data"), dict):
        raise InvalidWebhook("body is not a Stripe event")
    if not isinstance(body["data"].get("object"), dict):
        raise InvalidWebhook("event has no data.object")
    return body


def _timestamp(header: str) -> int:
    for item in header.split(","):
        name, _, value = item.partition("=")
        if name.strip() == "t":
            return int(value)
    raise InvalidWebhook("no timestamp in Stripe-Signature")


def event_object(event: dict[str, Any]) -> dict[str, Any]:
    return event["data"]["object"]
