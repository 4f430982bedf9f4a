"""The few ASGI request/response helpers black-box servers need (no framework: the fake's routes
are a handful, and every byte on the wire stays under our control).

Public API: `read_body(receive, limit)` (raises BodyTooLarge, or its subclass IncompleteBody
when the client leaves mid-body), `header(scope, name)`,
`query_string(scope)`, `send_bytes(send, status, body, headers)`, `send_json(send, status, obj)`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from simulator.blackbox.serving import Receive, Scope, Send

#: largest request body a black-box server reads (Stripe's requests are a few KB)
MAX_BODY_BYTES = 1 << 20


class BodyTooLarge(Exception):
    """The request body is longer than the server reads."""


class IncompleteBody(BodyTooLarge):
    """The client went away before its body ended. A subclass of BodyTooLarge so that a route
    refusing an oversized body refuses a truncated one too: a cut form body can still parse,
    and must not be executed."""


async def read_body(receive: Receive, limit: int = MAX_BODY_BYTES) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise IncompleteBody("the client disconnected before the request body ended")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"request body over {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def header(scope: Scope, name: str) -> str | None:
    """The first value of header `name` (case-insensitive), decoded as latin-1."""
    wanted = name.lower().encode("latin-1")
    for key, value in scope.get("headers", []):
        if key.lower() == wanted:
            return bytes(value).decode("latin-1")
    return None


def query_string(scope: Scope) -> str:
    return bytes(scope.get("query_string", b"")).decode("latin-1")


async def send_bytes(
    send: Send, status: int, body: bytes, headers: Mapping[str, str] | None = None
) -> None:
    raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    raw.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


async def send_json(
    send: Send, status: int, obj: Any, headers: Mapping[str, str] | None = None
) -> None:
    body = json.dumps(obj, indent=2, default=str).encode()
    await send_bytes(send, status, body, {"Content-Type": "application/json", **(headers or {})})
