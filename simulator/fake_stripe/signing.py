"""Webhook payloads and their `Stripe-Signature` header, as Stripe produces them.

The SDK verifies but cannot sign, so the HMAC is computed here: hex HMAC-SHA256 of
`"{t}.{payload}"` with the endpoint secret.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from simulator import json_codec


def sign(payload: bytes, secret: str, timestamp: int) -> str:
    signed = f"{timestamp}.".encode() + payload
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def event_payload(event: dict[str, Any]) -> bytes:
    """Deterministic bytes for an event (key order as built, Stripe's two-space indent)."""
    return json_codec.pretty(event)
