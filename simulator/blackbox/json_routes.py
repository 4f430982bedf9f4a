"""JSON request bodies and one-line JSON errors for paysim's own HTTP routes (the served engine,
the sinks), on top of the shared ASGI helpers (simulator/blackbox/asgi.py).

A route raises `HttpError`; the app answers `{"error": code, "message": ...}` with its status.
Every body is bounded and its shape checked here once.
"""

from __future__ import annotations

import json
from typing import Any

from simulator.blackbox.asgi import BodyTooLarge, read_body
from simulator.blackbox.serving import Receive

MAX_JSON_BODY = 16 * 1024
MAX_ID = 200


class HttpError(Exception):
    """An answer other than success: status, error code and a one-line message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def answer(self) -> dict[str, str]:
        return {"error": self.code, "message": self.message}


async def bounded_body(receive: Receive, limit: int) -> bytes:
    try:
        return await read_body(receive, limit)
    except BodyTooLarge:
        raise HttpError(413, "too_large", f"body larger than {limit} bytes") from None


async def json_body(receive: Receive, limit: int = MAX_JSON_BODY) -> dict[str, Any]:
    raw = await bounded_body(receive, limit)
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise HttpError(400, "bad_request", "body: expected a JSON object") from None
    if not isinstance(body, dict):
        raise HttpError(400, "bad_request", "body: expected a JSON object")
    return body


def id_field(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not 0 < len(value) <= MAX_ID:
        raise HttpError(400, "bad_request", f"{key}: expected a string of 1 to {MAX_ID} characters")
    return value
