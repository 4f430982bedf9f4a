"""Helpers for black-box tests: the fake Stripe over HTTP with a webhook receiver that checks
signatures the way a service does (stripe.Webhook.construct_event), and SDK calls from trio."""

from __future__ import annotations

import functools
import json
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import stripe
import trio

from simulator.blackbox.asgi import header, read_body, send_bytes
from simulator.blackbox.serving import Receive, Scope, Send, serve_asgi
from simulator.blackbox.stripe_service import (
    StripeService,
    StripeServiceConfig,
    serve_fake_stripe,
)
from tests.stripehelpers import SECRET, session_params

T = TypeVar("T")
__all__ = [
    "SECRET",
    "Receiver",
    "fake_stripe_with_receiver",
    "in_thread",
    "listening",
    "session_params",
]


async def in_thread(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """A blocking SDK call (stripe-python's default client) without blocking the server."""
    return await trio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))


def listening(url: str) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", int(url.rsplit(":", 1)[1]))) == 0


@dataclass
class Receiver:
    """A service's webhook route: verifies the signature, keeps the event, answers
    `status(event, n)` (n = how many times this event id arrived, this one included)."""

    secret: str = SECRET
    status: Callable[[dict[str, Any], int], int] = lambda event, n: 200
    events: list[dict[str, Any]] = field(default_factory=list)
    #: (body, Stripe-Signature header) of every verified delivery, as received
    raw: list[tuple[bytes, str]] = field(default_factory=list)
    bad_signatures: int = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await read_body(receive)
        try:
            stripe.Webhook.construct_event(
                body.decode(), header(scope, "stripe-signature") or "", self.secret
            )
        except (ValueError, stripe.SignatureVerificationError):
            self.bad_signatures += 1
            await send_bytes(send, 400, b"bad signature")
            return
        event = json.loads(body)
        self.raw.append((body, header(scope, "stripe-signature") or ""))
        self.events.append(event)
        n = sum(1 for e in self.events if e["id"] == event["id"])
        await send_bytes(send, self.status(event, n), b"")

    def types(self) -> list[str]:
        return [e["type"] for e in self.events]


@asynccontextmanager
async def fake_stripe_with_receiver(
    receiver: Receiver | None = None, **config: Any
) -> AsyncIterator[tuple[StripeService, Receiver]]:
    receiver = receiver or Receiver()
    async with serve_asgi(receiver) as hook_url:
        options = StripeServiceConfig(
            webhook_url=hook_url + "/webhooks/stripe", webhook_secret=receiver.secret, **config
        )
        async with serve_fake_stripe(options) as service:
            yield service, receiver
