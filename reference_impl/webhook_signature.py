"""Webhook verification: one parser of the `Stripe-Signature` header, the SDK's, and bounded JSON.

`stripe.Webhook.construct_event` is `WebhookSignature.verify_header` + `json.loads` + a
`StripeObject` tree. The engine wants plain JSON (stripe>=16 objects are not dicts), so it calls
the SDK's verification itself and stops there. The SDK checks staleness against the wall clock
(`time.time()`), which would break virtual time, so the HMAC is checked by the SDK with tolerance
off and the timestamp against `clock.now()` here: the timestamp is the one the SDK's own parser
(`_get_timestamp_and_signatures`, what `verify_header` itself calls) returns for the very header
the SDK verified. Two parsers of one header once disagreed (` t=<now>,` prepended to a day-old
header passed the HMAC on the old `t` and the staleness check on the new one): never re-parse it.
Future timestamps pass, as in the SDK.

The body is hostile until proven otherwise even when correctly signed: its size, nesting depth
and integers are bounded, and NaN/Infinity are refused, before the engine reads a field.
"""

from __future__ import annotations

import json
import math
from typing import Any

import stripe

from reference_impl.ports import Clock

#: Stripe's events are a few KiB; anything this large is not one of ours
MAX_BODY_BYTES = 256 * 1024
#: a real header is `t=...,v1=...` (plus `v0=` in test mode): a few hundred characters
MAX_HEADER_CHARS = 4096
#: an event's data.object nests a handful of levels
MAX_JSON_DEPTH = 32
#: integers beyond this are not amounts, timestamps or counts Stripe sends (2^53: exact in JSON)
MAX_JSON_INT = 2**53

#: the SDK's parser of the header, the very function `verify_header` calls. Bound at import, so
#: an SDK that renames it fails loudly here instead of verifying with a second parser.
_sdk_parse_header = stripe.WebhookSignature._get_timestamp_and_signatures


class InvalidWebhook(Exception):
    """Bad, missing or stale signature, or a body that is not a Stripe event: answer 400."""


def verify_event(
    payload: bytes, signature_header: str | None, secret: str, *, clock: Clock, tolerance: float
) -> dict[str, Any]:
    """The verified event as plain JSON; raises InvalidWebhook for anything else, never more."""
    if not isinstance(payload, bytes | bytearray) or len(payload) > MAX_BODY_BYTES:
        raise InvalidWebhook(f"body is not bytes of at most {MAX_BODY_BYTES} bytes")
    if not isinstance(signature_header, str) or len(signature_header) > MAX_HEADER_CHARS:
        raise InvalidWebhook("missing or oversized Stripe-Signature header")
    try:
        text = bytes(payload).decode("utf-8")
        stripe.WebhookSignature.verify_header(text, signature_header, secret, tolerance=0)
        timestamp = signed_timestamp(signature_header)
    except (stripe.SignatureVerificationError, UnicodeDecodeError) as exc:
        raise InvalidWebhook(str(exc)) from exc
    # tolerance 0 checks no age, as `tolerance=0` means to stripe-python and stripe-node alike
    # (the footgun of turning replay protection off, kept so that a scenario can show it)
    if tolerance > 0 and timestamp < clock.now() - tolerance:
        raise InvalidWebhook(f"stale signature: t={timestamp} older than {tolerance:.0f}s")
    return event_envelope(parse_bounded_json(text))


def event_page(page: Any) -> tuple[list[Any], str | None]:
    """A page of `GET /v1/events`: its items (each still to be checked by `event_envelope`) and
    the id to ask for the next page after, None on the last page; InvalidWebhook if it is not
    shaped as a list answer."""
    data = page.get("data") if isinstance(page, dict) else None
    if not isinstance(data, list):
        raise InvalidWebhook("the event list is not a list")
    last = data[-1].get("id") if data and isinstance(data[-1], dict) else None
    more = page.get("has_more") is True and isinstance(last, str)
    return data, last if more else None


def event_envelope(body: Any) -> dict[str, Any]:
    """`body` if it is shaped as a Stripe event (a type and a data.object), else InvalidWebhook:
    for a delivered body and for an event listed from the API alike."""
    if not isinstance(body, dict):
        raise InvalidWebhook("body is not a Stripe event")
    if not isinstance(body.get("type"), str) or not isinstance(body.get("data"), dict):
        raise InvalidWebhook("body is not a Stripe event")
    if not isinstance(body["data"].get("object"), dict):
        raise InvalidWebhook("event has no data.object")
    return body


def signed_timestamp(header: str) -> int:
    """The `t` the SDK verified the HMAC against (call only after `verify_header` passed)."""
    try:
        timestamp, _ = _sdk_parse_header(header, stripe.WebhookSignature.EXPECTED_SCHEME)
    except Exception as exc:  # verify_header parsed it already: unreachable unless the SDK changed
        raise InvalidWebhook("unparseable Stripe-Signature header") from exc
    if not isinstance(timestamp, int):
        raise InvalidWebhook("no timestamp in Stripe-Signature")
    return timestamp


def parse_bounded_json(text: str) -> Any:
    """`json.loads`, refusing deep nesting, huge integers, and NaN/Infinity (InvalidWebhook).

    Integers are checked after parsing, in the same walk as the depth, not by a hook called for
    each one while parsing; a number too long to parse at all is refused by the parser itself
    (Python's limit on the digits of an int)."""
    try:
        value = _DECODER.decode(text)
    except (ValueError, RecursionError) as exc:
        raise InvalidWebhook(f"body is not bounded JSON: {type(exc).__name__}") from exc
    problem = _unbounded(value, MAX_JSON_DEPTH)
    if problem is not None:
        raise InvalidWebhook(problem)
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


#: `json.loads(text, parse_constant=...)`, built once
_DECODER = json.JSONDecoder(parse_constant=_no_constant)


def _unbounded(value: Any, limit: int) -> str | None:
    """Why `value` is not bounded JSON (too deep, a number out of range), or None. Iterative:
    a recursive walk is what a deep body attacks."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        kind = type(node)
        if kind is dict:
            children: Any = node.values()
        elif kind is list:
            children = node
        else:
            if kind is int and not -MAX_JSON_INT <= node <= MAX_JSON_INT:
                return "body is not bounded JSON: integer out of range"
            if kind is float and not math.isfinite(node):  # 1e400 parses as inf
                return "body is not bounded JSON: a number out of range"
            continue
        if depth > limit:
            return f"body nests deeper than {limit}"
        stack.extend((child, depth + 1) for child in children)
    return None


def event_object(event: dict[str, Any]) -> dict[str, Any]:
    return event["data"]["object"]
