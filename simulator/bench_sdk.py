"""The stripe SDK's own cost per call, with nothing behind it: a floor under purchases/s.

The throughput target asks for the full SDK path. What that path costs on its own (building and
encoding the request, the retry wrapper, parsing the answer into `StripeObject`s, the engine's
`to_dict()`, and the SDK's HMAC check of each webhook) is measured here against an HTTP client
that answers at once with a body the fake rendered. Times the calls per purchase of a real run,
this is the CPU a purchase needs before the fake, the store, the scheduler or the engine do
anything: `1 / floor` bounds purchases/s however fast the rest becomes.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

import stripe
import trio

from reference_impl.webhook_signature import verify_event
from simulator.fake_stripe import signing
from simulator.fake_stripe.http_client import SimHTTPClient

#: what the reference engine asks for (reference_engine._create_checkout_session), one purchase
CREATE_PARAMS: dict[str, Any] = {
    "mode": "payment",
    "client_reference_id": "pur_000001",
    "expires_at": 1_767_227_400,
    "success_url": "https://shop.example/checkout/success?session_id={CHECKOUT_SESSION_ID}",
    "cancel_url": "https://shop.example/checkout/cancel",
    "metadata": {"purchase_id": "pur_000001", "user_id": "user_000001"},
    "payment_intent_data": {"metadata": {"purchase_id": "pur_000001"}},
    "line_items": [
        {
            "quantity": 1,
            "price_data": {
                "currency": "usd",
                "unit_amount": 5000,
                "product_data": {"name": "Program prog_1"},
            },
        }
    ],
}


@dataclass(frozen=True)
class SdkCosts:
    """Microseconds of CPU per call, each the best of a few rounds (least disturbed)."""

    create_us: float
    retrieve_us: float
    verify_us: float

    def per_purchase_us(self, posts: float, gets: float, verifications: float) -> float:
        return posts * self.create_us + gets * self.retrieve_us + verifications * self.verify_us


class _Canned(SimHTTPClient):
    """The SDK's client seam answering every request at once with one canned body."""

    def __init__(self, body: bytes) -> None:
        super().__init__(self._no_wire, random.Random(0), timeout_s=None)
        self._body = body

    async def _no_wire(self, request: Any) -> NoReturn:
        raise AssertionError("unused")

    async def request_async(
        self, method: str, url: str, headers: Mapping[str, str], post_data: Any = None
    ) -> tuple[bytes, int, Mapping[str, str]]:
        return self._body, 200, {"Request-Id": "req_bench"}


@dataclass(frozen=True)
class _FixedClock:
    at: float

    def now(self) -> float:
        return self.at


def session_body() -> bytes:
    """A checkout session as the fake renders it, created through the SDK and the fake."""
    import trio.testing

    from simulator.clock import SimClock
    from simulator.fake_stripe import FakeStripe

    body: list[bytes] = []

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            fake = FakeStripe(SimClock(), random.Random(1), nursery)
            session = await fake.client().v1.checkout.sessions.create_async(CREATE_PARAMS)
            body.append(fake.event_payload(session.to_dict()))
            fake.stop()
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    return body[0]


def measure(calls: int, rounds: int = 3) -> SdkCosts:
    """Per-call CPU of a session create, a retrieve and a webhook verification."""
    body = session_body()
    client = stripe.StripeClient("sk_test_bench", http_client=_Canned(body), max_network_retries=2)
    sessions = client.v1.checkout.sessions
    options = {"idempotency_key": "checkout-session:pur_000001", "max_network_retries": 0}
    event = {
        "id": "evt_bench",
        "object": "event",
        "type": "checkout.session.completed",
        "data": {"object": json.loads(body)},
    }
    payload = signing.event_payload(event)
    header = signing.sign(payload, "whsec_bench", 1_767_225_600)

    async def create() -> None:
        (await sessions.create_async(CREATE_PARAMS, options)).to_dict()

    async def retrieve() -> None:
        (await sessions.retrieve_async("cs_sim_000001")).to_dict()

    clock = _FixedClock(1_767_225_600)

    async def verify() -> None:  # what the engine does with each delivery, first
        verify_event(payload, header, "whsec_bench", clock=clock, tolerance=300)

    return SdkCosts(
        create_us=_best(create, calls, rounds),
        retrieve_us=_best(retrieve, calls, rounds),
        verify_us=_best(verify, calls, rounds),
    )


def _best(call: Callable[[], Awaitable[None]], calls: int, rounds: int) -> float:
    async def loop() -> float:
        best = float("inf")
        for _ in range(rounds):
            started = time.process_time()
            for _ in range(calls):
                await call()
            best = min(best, time.process_time() - started)
        return best

    return trio.run(loop) / calls * 1e6
