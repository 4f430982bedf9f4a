"""Floors under purchases/s: what the stripe SDK and trio cost a purchase with nothing else.

The throughput target asks for the full SDK path. What that path costs on its own (building and
encoding the request, the retry wrapper, parsing the answer into `StripeObject`s, the engine's
plain JSON of the answer, and the SDK's HMAC check of each webhook) is measured against an HTTP
client that answers at once with a body the fake rendered, and multiplied by the calls per
purchase of a real run. Likewise trio: a task spawned, a sleep, a cancel scope and a task switch each cost something
measured here on an empty scheduler, times how many of each a purchase needs (counted exactly by
the profiled run). Together they are CPU a purchase needs before the fake, the store, the engine or
the history do anything: `1 / floor` bounds purchases/s however fast the rest becomes.
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

from reference_impl.reference_engine import stripe_json
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


def measure_sdk(calls: int, rounds: int = 3) -> SdkCosts:
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

    async def create() -> None:  # and the answer as plain JSON, as the engine takes it
        stripe_json(await sessions.create_async(CREATE_PARAMS, options))

    async def retrieve() -> None:
        stripe_json(await sessions.retrieve_async("cs_sim_000001"))

    clock = _FixedClock(1_767_225_600)

    async def verify() -> None:  # what the engine does with each delivery, first
        verify_event(payload, header, "whsec_bench", clock=clock, tolerance=300)

    return SdkCosts(
        create_us=_best(create, calls, rounds),
        retrieve_us=_best(retrieve, calls, rounds),
        verify_us=_best(verify, calls, rounds),
    )


# ---- trio


@dataclass(frozen=True)
class TrioCosts:
    """Microseconds of CPU per scheduler operation (MockClock, deterministic scheduling)."""

    spawn_us: float  # start_soon, first step and exit of a task that returns at once
    sleep_us: float  # trio.sleep: a deadline, its cancel scope, the wake-up
    scope_us: float  # a cancel scope entered and left
    switch_us: float  # a task suspended and resumed (a checkpoint)

    def per_purchase_us(self, counts: Mapping[str, float]) -> float:
        return (
            counts["spawns"] * self.spawn_us
            + counts["sleeps"] * self.sleep_us
            + counts["other_scopes"] * self.scope_us
            + counts["other_switches"] * self.switch_us
        )


#: (count, trio source file, function) read off a profile. Only plain functions: cProfile counts
#: every resumption of a coroutine as a call, so `sleep_until` would count each sleep twice; a
#: sleep is counted by the deadline scope (`move_on_at`) that `sleep_until` opens, exactly once.
TRIO_COUNTERS = (
    ("spawns", "trio/_core/_run.py", "spawn_impl"),
    ("scopes", "trio/_core/_run.py", "__enter__"),  # CancelScope's: the one in that file
    ("switches", "trio/_core/_run.py", "reschedule"),
)


def trio_counts(raw_stats: Mapping[Any, Any]) -> dict[str, int]:
    """Scheduler operations in a profiled run; a sleep's own scope and wake-up, and a spawn's
    first step, are counted once, in `sleeps` and `spawns`."""
    found = dict.fromkeys((name for name, _, _ in TRIO_COUNTERS), 0)
    found["sleeps"] = 0
    for (file, _line, fn), entry in raw_stats.items():
        for name, fragment, function in TRIO_COUNTERS:
            if fn == function and file.endswith(fragment):
                found[name] += entry[1]
        if fn == "move_on_at" and file.endswith("trio/_timeouts.py"):
            found["sleeps"] += sum(
                timing[1]
                for (caller_file, _, caller), timing in entry[4].items()
                if caller == "sleep_until" and caller_file.endswith("trio/_timeouts.py")
            )
    found["other_scopes"] = max(0, found["scopes"] - found["sleeps"])
    found["other_switches"] = max(0, found["switches"] - found["sleeps"] - found["spawns"])
    return found


def measure_trio(ops: int, rounds: int = 3) -> TrioCosts:
    """Each operation `ops` times over 20 concurrent tasks, best of `rounds`."""
    import trio.testing

    from simulator.scheduling import seed_scheduler

    async def spawns(n: int) -> None:
        async with trio.open_nursery() as nursery:
            for _ in range(n):
                nursery.start_soon(_return)

    async def sleeps(n: int) -> None:
        for _ in range(n):
            await trio.sleep(0.01)

    async def scopes(n: int) -> None:
        for _ in range(n):
            with trio.CancelScope():
                pass

    async def switches(n: int) -> None:
        for _ in range(n):
            await trio.lowlevel.checkpoint()

    def cost(body: Callable[[int], Awaitable[None]]) -> float:
        tasks = 20

        async def main() -> None:
            async with trio.open_nursery() as nursery:
                for _ in range(tasks):
                    nursery.start_soon(body, ops // tasks)

        best = float("inf")
        for _ in range(rounds):
            seed_scheduler(1)
            started = time.process_time()
            trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
            best = min(best, time.process_time() - started)
        return best / (ops // tasks * tasks) * 1e6

    return TrioCosts(
        spawn_us=cost(spawns),
        sleep_us=cost(sleeps),
        scope_us=cost(scopes),
        switch_us=cost(switches),
    )


async def _return() -> None:
    return None


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
