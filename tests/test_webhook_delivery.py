"""At-least-once webhook delivery in virtual time: retries, give-up, timeouts with overlap,
duplicates, reordering, signatures, and the same history for the same seed."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import stripe

from simulator.fake_stripe import FakeStripe, StripeFaults, WebhookDelivery, WebhookPolicy
from tests.stripehelpers import SECRET, Recorder, make_fake, run, session_params

DAY = 24 * 3600.0


@dataclass
class Endpoint:
    """A webhook endpoint that answers from a script and notes what reached it, and when."""

    answers: Callable[[int], int] = lambda n: 200
    busy_s: Callable[[int], float] = lambda n: 0.0
    calls: list[tuple[float, str, int]] = field(default_factory=list)  # (t, event id, t= stamp)
    running: int = 0
    max_running: int = 0

    async def __call__(self, payload: bytes, header: str) -> int:
        event = stripe.Webhook.construct_event(payload, header, SECRET, tolerance=0)
        n = len(self.calls)
        stamp = int(header.split(",")[0].removeprefix("t="))
        self.calls.append((anyio.current_time(), event.id, stamp))
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        try:
            await anyio.sleep(self.busy_s(n))
            return self.answers(n)
        finally:
            self.running -= 1


async def paid_session(fake: FakeStripe) -> None:
    session = await fake.client().v1.checkout.sessions.create_async(session_params())
    await fake.customer_pay(session.id)


def deliver(
    endpoint: Endpoint,
    policy: WebhookPolicy,
    scenario: Callable[[FakeStripe, WebhookDelivery], Awaitable[None]] | None = None,
    *,
    seed: int = 1,
    wait_s: float = 4 * DAY,
) -> tuple[WebhookDelivery, Recorder, bool]:
    async def main() -> tuple[WebhookDelivery, Recorder, bool]:
        rec = Recorder()
        async with anyio.create_task_group() as tg:
            fake = make_fake(tg, seed=seed, record=rec)
            delivery = WebhookDelivery(
                fake, endpoint, random.Random(seed), tg, policy=policy, record=rec
            )
            await (scenario or (lambda f, d: paid_session(f)))(fake, delivery)
            idle = await delivery.wait_idle(wait_s)
            tg.cancel_scope.cancel()
        return delivery, rec, idle

    return run(main, seed=seed)


def test_retries_until_acknowledged() -> None:
    endpoint = Endpoint(answers=lambda n: 500 if n < 4 else 200)  # 2 events: 2 failures each
    delivery, rec, idle = deliver(endpoint, WebhookPolicy(retry_jitter=0.0))
    assert idle and delivery.outstanding() == 0
    assert delivery.stats.acknowledged == 2 and delivery.stats.failed_attempts == 4
    by_event: dict[str, list[float]] = {}
    for at, event_id, _ in endpoint.calls:
        by_event.setdefault(event_id, []).append(at)
    for times in by_event.values():
        assert [round(b - a) for a, b in zip(times, times[1:], strict=False)] == [60, 120]
    assert [r["status"] for r in rec.of("webhook.response")].count(500) == 4
    assert len(rec.of("webhook.acknowledged")) == 2


def test_non_2xx_and_exceptions_are_failures() -> None:
    def answers(n: int) -> int:
        if n == 2:
            raise RuntimeError("engine crashed")
        return [302, 400, 0, 204][min(n, 3)]

    endpoint = Endpoint(answers=answers)
    policy = WebhookPolicy(retry_jitter=0.0)
    delivery, rec, _ = deliver(endpoint, policy, lambda f, d: _one_event(f))
    assert delivery.stats.acknowledged == 1 and len(endpoint.calls) == 4
    assert [r["status"] for r in rec.of("webhook.response")] == [302, 400, "error", 204]
    assert rec.of("webhook.response")[2]["error"] == "RuntimeError"


async def _one_event(fake: FakeStripe) -> None:
    session = await fake.client().v1.checkout.sessions.create_async(session_params())
    await fake.customer_pay(session.id, flow="decline")


def test_live_mode_gives_up_after_three_days() -> None:
    endpoint = Endpoint(answers=lambda n: 503)
    delivery, rec, idle = deliver(endpoint, WebhookPolicy.live(), lambda f, d: _one_event(f))
    # two events: the decline, and the session's expiry 24 h later
    assert idle and delivery.stats.given_up == 2 and delivery.stats.acknowledged == 0
    calls = [c for c in endpoint.calls if c[1] == "evt_sim_000001"]
    first, last = calls[0][0], calls[-1][0]
    assert 2 * DAY < last - first <= 3 * DAY
    assert 10 <= len(calls) <= 20
    given_up = rec.of("webhook.given_up")[0]
    assert given_up["event_id"] == "evt_sim_000001" and given_up["attempts"] == len(calls)
    assert given_up["event_type"] == "payment_intent.payment_failed"
    assert rec.times("webhook.given_up")[0] == round(last, 6)
    # each attempt is signed when it is sent: fresh timestamps on retries
    stamps = [stamp for _, _, stamp in calls]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)


def test_test_mode_tries_a_few_times_over_hours() -> None:
    endpoint = Endpoint(answers=lambda n: 500)
    delivery, _, _ = deliver(endpoint, WebhookPolicy.test_mode(), lambda f, d: _one_event(f))
    assert len(endpoint.calls) == 4 and delivery.stats.given_up == 1
    span = endpoint.calls[-1][0] - endpoint.calls[0][0]
    assert 3600 < span < 8 * 3600


def test_timeout_retries_while_the_first_attempt_still_runs() -> None:
    endpoint = Endpoint(busy_s=lambda n: 100.0 if n == 0 else 0.0)
    policy = WebhookPolicy(delivery_timeout_s=30.0, first_retry_s=10.0, retry_jitter=0.0)
    delivery, rec, _ = deliver(endpoint, policy, lambda f, d: _one_event(f))
    assert [round(at) for at, _, _ in endpoint.calls] == [0, 40]
    assert endpoint.max_running == 2  # the retry ran while the first attempt was still busy
    assert delivery.stats.timeouts == 1 and delivery.stats.late_responses == 1
    assert delivery.stats.overlapping_attempts == 1
    responses = rec.of("webhook.response")
    assert [(r["attempt"], r["status"], r["late"]) for r in responses] == [
        (1, "timeout", False),
        (2, 200, False),
        (1, 200, True),
    ]
    assert delivery.stats.acknowledged == 1


def test_duplicates_reach_the_endpoint_twice() -> None:
    for kind in ("concurrent", "immediate", "late"):
        weights = {k: float(k == kind) for k in ("immediate", "concurrent", "late")}
        policy = WebhookPolicy(duplicate_probability=1.0, duplicate_weights=weights)
        endpoint = Endpoint(busy_s=lambda n: 1.0)
        delivery, rec, idle = deliver(endpoint, policy, lambda f, d: _one_event(f))
        assert idle and delivery.stats.duplicates_sent == 1
        [(t1, id1, _), (t2, id2, _)] = endpoint.calls
        assert id1 == id2
        assert [r["duplicate"] for r in rec.of("webhook.attempt")] == [None, kind]
        if kind == "concurrent":
            assert t1 == t2 and endpoint.max_running == 2
        elif kind == "immediate":
            assert t2 - t1 == 1.0
        else:
            assert 60 <= t2 - t1 <= 3600 and delivery.stats.acknowledged == 1


def test_reorder_jitter_delivers_out_of_order() -> None:
    async def many(fake: FakeStripe, delivery: WebhookDelivery) -> None:
        client = fake.client()
        for _ in range(10):
            session = await client.v1.checkout.sessions.create_async(session_params())
            await fake.customer_pay(session.id, flow="decline")

    endpoint = Endpoint()
    delivery, _, _ = deliver(endpoint, WebhookPolicy(reorder_jitter_s=120.0), many)
    arrived = [event_id for _, event_id, _ in endpoint.calls]
    assert sorted(arrived) == [f"evt_sim_{i:06d}" for i in range(1, 11)]
    assert arrived != sorted(arrived)
    in_order, _, _ = deliver(Endpoint(), WebhookPolicy(), many)
    assert in_order.stats.acknowledged == 10


def test_pause_defers_attempts_without_using_retries() -> None:
    async def paused(fake: FakeStripe, delivery: WebhookDelivery) -> None:
        delivery.pause()
        await _one_event(fake)
        await anyio.sleep(3600)
        assert delivery.stats.attempts == 0 and delivery.outstanding() == 1
        delivery.resume()

    endpoint = Endpoint()
    delivery, _, idle = deliver(endpoint, WebhookPolicy(), paused)
    assert idle and [round(at) for at, _, _ in endpoint.calls] == [3600]


def test_failure_probability_fails_on_the_way() -> None:
    policy = WebhookPolicy(failure_probability=1.0, max_attempts=3)
    endpoint = Endpoint()
    delivery, rec, _ = deliver(endpoint, policy, lambda f, d: _one_event(f))
    assert endpoint.calls == [] and delivery.stats.given_up == 1
    assert [r["error"] for r in rec.of("webhook.response")] == ["network"] * 3


def _chaos(seed: int) -> list[tuple[float, str, dict[str, Any]]]:
    async def scenario(fake: FakeStripe, delivery: WebhookDelivery) -> None:
        fake.faults = StripeFaults(
            base_latency_s=0.2,
            latency_jitter_s=0.3,
            lost_response_probability=0.2,
            error_5xx_probability=0.1,
            latency_spike_probability=0.1,
            latency_spike_s=40.0,
        )
        flows = ["card", "decline", "decline_then_card", "async_success", "async_failure"]
        client = fake.client(max_network_retries=3)

        async def buyer(i: int) -> None:
            try:
                with anyio.move_on_after(30):
                    session = await client.v1.checkout.sessions.create_async(
                        session_params(client_reference_id=f"user_{i}"),
                        {"idempotency_key": f"purchase-{i}"},
                    )
                    await fake.customer_pay(session.id, flow=flows[i % len(flows)])
            except stripe.StripeError:
                pass

        async with anyio.create_task_group() as buyers:
            for i in range(12):
                buyers.start_soon(buyer, i)

    def answers(n: int) -> int:
        return 500 if n % 3 == 0 else 200

    policy = WebhookPolicy(duplicate_probability=0.5, reorder_jitter_s=30.0, delivery_timeout_s=5.0)
    endpoint = Endpoint(answers=answers, busy_s=lambda n: float(n % 4) * 3)
    _, rec, _ = deliver(endpoint, policy, scenario, seed=seed, wait_s=5 * DAY)
    return rec.entries


def test_same_seed_same_history_different_seed_different() -> None:
    first = _chaos(7)
    assert first == _chaos(7)
    assert first != _chaos(8)
    kinds = {t for _, t, _ in first}
    assert {"stripe.request", "stripe.event", "webhook.attempt", "webhook.response"} <= kinds
