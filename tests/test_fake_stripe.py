"""The fake Stripe through the real stripe SDK: objects, errors, idempotency, faults, expiry,
customer flows and signatures (Stripe behaviour as documented by Stripe)."""

from __future__ import annotations

import random
from typing import Any

import anyio
import pytest
import stripe

from simulator.clock import SIM_EPOCH, SimClock
from simulator.fake_stripe import FakeStripe, StripeFaults
from simulator.fake_stripe.forms import parse_form
from simulator.fake_stripe.objects import PaymentIntent, charge_json
from tests.stripehelpers import SECRET, Recorder, make_fake, run, session_params

DAY = 24 * 3600


def types(fake: FakeStripe) -> list[str]:
    return [e["type"] for e in fake.events]


async def create(client: stripe.StripeClient, key: str | None = None, **overrides: Any) -> Any:
    options: Any = {"idempotency_key": key} if key else {}
    return await client.v1.checkout.sessions.create_async(session_params(**overrides), options)


# ---- objects through the SDK


def test_parse_form_nests_dicts_and_lists() -> None:
    body = (
        "mode=payment&line_items[0][price_data][unit_amount]=500&line_items[0][quantity]=1"
        "&line_items[1][quantity]=2&metadata[purchase_id]=p%201&metadata[0]=zero"
        "&expand[0]=payment_intent&blank="
    )
    assert parse_form(body) == {
        "mode": "payment",
        "line_items": [{"price_data": {"unit_amount": "500"}, "quantity": "1"}, {"quantity": "2"}],
        "metadata": {"purchase_id": "p 1", "0": "zero"},
        "expand": ["payment_intent"],
        "blank": "",
    }


def test_create_and_retrieve_session() -> None:
    async def main() -> None:
        async with anyio.create_task_group() as tg:
            fake = make_fake(tg)
            client = fake.client()
            session = await create(client)
            assert session.id == "cs_sim_000001"
            assert session.object == "checkout.session"
            assert (session.status, session.payment_status) == ("open", "unpaid")
            assert session.amount_total == 5000 and session.currency == "usd"
            assert session.metadata.to_dict() == {"purchase_id": "pur_1", "user_id": "user_1"}
            assert session.client_reference_id == "user_1"
            assert session.payment_intent is None
            assert session.expires_at == int(SIM_EPOCH) + DAY  # default 24 h
            assert session.url.endswith(session.id)
            stored = fake.sessions[session.id]
            assert stored.payment_intent_metadata == {"purchase_id": "pur_1"}
            again = await client.v1.checkout.sessions.retrieve_async(session.id)
            assert again.to_dict() == session.to_dict()
            listed = await client.v1.checkout.sessions.list_async({"status": "open"})
            assert [s.id for s in listed.data] == [session.id]
            tg.cancel_scope.cancel()

    run(main)


def test_validation_errors_are_400_and_unknown_ids_404() -> None:
    async def main() -> None:
        async with anyio.create_task_group() as tg:
            fake = make_fake(tg)
            client = fake.client()
            now = int(SIM_EPOCH)
            for expires_at in (now + 29 * 60, now + DAY + 1):
                with pytest.raises(stripe.InvalidRequestError) as info:
                    await create(client, expires_at=expires_at)
                assert info.value.http_status == 400 and info.value.param == "expires_at"
            session = await create(client, expires_at=now + 30 * 60)
            assert session.expires_at == now + 1800
            with pytest.raises(stripe.InvalidRequestError) as info:
                await create(client, mode="subscription")
            assert info.value.param == "mode"
            with pytest.raises(stripe.InvalidRequestError) as info:
                await create(client, bogus="x")
            assert info.value.code == "parameter_unknown"
            with pytest.raises(stripe.InvalidRequestError) as info:
                await client.v1.checkout.sessions.retrieve_async("cs_nope")
            assert (info.value.http_status, info.value.code) == (404, "resource_missing")
            with pytest.raises(stripe.InvalidRequestError) as info:
                await client.v1.payment_intents.retrieve_async("pi_nope")
            assert (info.value.http_status, info.value.code) == (404, "resource_missing")
            assert len(fake.sessions) == 1
            tg.cancel_scope.cancel()

    run(main)


def test_expire_only_open_sessions() -> None:
    async def main() -> None:
        async with anyio.create_task_group() as tg:
            fake = make_fake(tg)
            client = fake.client()
            session = await create(client)
            expired = await client.v1.checkout.sessions.expire_async(session.id)
            assert expired.status == "expired" and expired.url is None
            assert types(fake) == ["checkout.session.expired"]
            assert fake.events[0]["data"]["object"]["id"] == session.id
            with pytest.raises(stripe.InvalidRequestError) as info:
                await client.v1.checkout.sessions.expire_async(session.id)
            assert info.value.http_status == 400
            assert await fake.customer_pay(session.id) is False  # the tab is dead
            paid = await create(client)
            assert await fake.customer_pay(paid.id)
            with pytest.raises(stripe.InvalidRequestError):
                await client.v1.checkout.sessions.expire_async(paid.id)
            assert fake.sessions[paid.id].status == "complete"
            tg.cancel_scope.cancel()

    run(main)


def test_refunds() -> None:
    async def main() -> None:
        async with anyio.create_task_group() as tg:
            fake = make_fake(tg)
            client = fake.client()
            session = await create(client)
            await fake.customer_pay(session.id, flow="decline")
            intent_id = fake.sessions[session.id].payment_intent
            assert intent_id is not None
            with pytest.raises(stripe.InvalidRequestError):  # not paid
                await client.v1.refunds.create_async({"payment_intent": intent_id})
            await fake.customer_pay(session.id, flow="card")
            refund = await client.v1.refunds.create_async({"payment_intent": intent_id})
            assert (refund.amount, refund.payment_intent, refund.status) == (
                5000,
                intent_id,
                "succeeded",
            )
            with pytest.raises(stripe.InvalidRequestError) as info:
                await client.v1.refunds.create_async({"payment_intent": intent_id})
            assert info.value.code == "charge_already_refunded"
            assert [r.id for r in fake.refunds] == [refund.id]
            assert fake.refunded_payment_intents() == {intent_id}
            assert fake.paid_session_ids() == {session.id}
            with pytest.raises(stripe.InvalidRequestError):
                await client.v1.refunds.create_async({"payment_intent": "pi_nope"})
            tg.cancel_scope.cancel()

    run(main)


# ---- idempotency keys


def test_same_key_replays_the_first_response() -> None:
    async def main() -> None:
        rec = Recorder()
        async with anyio.create_task_group() as tg:
            fake = make_fake(tg, record=rec)
            client = fake.client()
            first = await create(client, key="purchase-1")
            second = await create(client, key="purchase-1")
            assert first.id == second.id and len(fake.sessions) == 1
            assert [r["replayed"] for r in rec.of("stripe.request")] == [False, True]
            # keys are scoped per API key, and kept for 24 h only
            other = await create(fake.client(api_key="sk_test_other"), key="purchase-1")
            assert other.id != first.id
            await anyio.sleep(DAY)
            later = await create(client, key="purchase-1")
            assert later.id not in (first.id, other.id)
            tg.cancel_scope.cancel()

    run(main)


def test_same_key_other_params_is_idempotency_error() -> None:
    async def main() -> None:
        async with anyio.create_task_group() as tg:
            fake = make_fake(tg)
            client = fake.client()
            await create(client, key="k")
            with pytest.raises(stripe.IdempotencyError) as info:
                await create(client, key="k", client_reference_id="someone_else")
            assert info.value.http_status == 400
            assert len(fake.sessions) == 1
            tg.cancel_scope.cancel()

    run(main)


def test_concurrent_same_key_gets_409() -> None:
    async def main() -> None:
        outcomes: dict[str, Any] = {}
        async with anyio.create_task_group() as tg:
            fake = make_fake(tg, faults=StripeFaults(processing_s=5.0))
            client = fake.client(max_network_retries=0)

            async def call(name: str, delay: float) -> None:
                await anyio.sleep(delay)
                try:
                    outcomes[name] = (await create(client, key="k")).id
                except stripe.APIError as exc:
                    outcomes[name] = exc

            async with anyio.create_task_group() as calls:
                calls.start_soon(call, "first", 0.0)
                calls.start_soon(call, "second", 1.0)
            assert outcomes["first"] == "cs_sim_000001"
            error = outcomes["second"]
            assert isinstance(error, stripe.APIError) and error.http_status == 409
            assert error.json_body["error"]["code"] == "idempotency_key_in_use"
            assert (await create(client, key="k")).id == "cs_sim_000001"  # done: replayed
            assert len(fake.sessions) == 1
            tg.cancel_scope.cancel()

    run(main)


def test_500_is_kept_under_the_key_and_replayed() -> None:
    async def main() -> None:
        rec = Recorder()
        async with anyio.create_task_group() as tg:
            fake = make_fake(tg, faults=StripeFaults(error_5xx_probability=1.0), record=rec)
            client = fake.client(max_network_retries=2)
            with pytest.raises(stripe.APIError) as info:
                await create(client, key="k")
            assert info.value.http_status == 500
            requests = rec.of("stripe.request")
            assert [(r["status"], r["fault"], r["replayed"]) for r in requests] == [
                (500, "error_5xx", False),
                (500, None, True),
                (500, None, True),
            ]
            fake.faults.error_5xx_probability = 0.0
            with pytest.raises(stripe.APIError):  # same key: still the stored 500
                await create(client, key="k")
            assert fake.sessions == {}
            assert (await create(client, key="k2")).id == "cs_sim_000001"
            tg.cancel_scope.cancel()

    run(main)


def test_a_500_after_execution_made_the_session_and_is_replayed_all_the_same() -> None:
    """Stripe's 500 promises nothing: the write may have been made. Kept under the key like
    any 500, so the SDK's retries with the key replay it; only a read tells."""

    async def main() -> None:
        rec = Recorder()
        faults = StripeFaults(error_5xx_after_execution_probability=1.0)
        async with anyio.create_task_group() as tg:
            fake = make_fake(tg, faults=faults, record=rec)
            client = fake.client(max_network_retries=2)
            with pytest.raises(stripe.APIError) as info:
                await create(client, key="k")
            assert info.value.http_status == 500
            requests = rec.of("stripe.request")
            assert [(r["status"], r["fault"], r["replayed"]) for r in requests] == [
                (500, "error_5xx_after_execution", False),
                (500, None, True),
                (500, None, True),
            ]
            [made] = fake.sessions.values()  # made once, by the first attempt
            assert made.status == "open"
            # reads are not writes: a retrieve answers as it should
            assert (await client.v1.checkout.sessions.retrieve_async(made.id)).id == made.id
            tg.cancel_scope.cancel()

    run(main)


# ---- the network


def test_lost_response_is_recovered_by_the_sdk_retry_with_the_same_key() -> None:
    async def main() -> None:
        rec = Recorder()
        faults = StripeFaults(lost_response_probability=1.0)

        def record(type: str, **fields: Any) -> None:
            rec(type, **fields)
            if type == "stripe.request":
                faults.lost_response_probability = 0.0  # only the first answer is lost

        async with anyio.create_task_group() as tg:
            fake = FakeStripe(SimClock(), random.Random(1), tg, faults=faults, record=record)
            session = await create(fake.client(max_network_retries=2))
            assert list(fake.sessions) == [session.id]
            assert [(r["fault"], r["replayed"]) for r in rec.of("stripe.request")] == [
                ("lost_response", False),
                (None, True),
            ]
            # without retries the engine sees a connection error, though the session exists
            faults.lost_response_probability = 1.0
            with pytest.raises(stripe.APIConnectionError):
                await create(fake.client(max_network_retries=0))
            assert len(fake.sessions) == 2
            tg.cancel_scope.cancel()

    run(main)


def test_a_request_stripe_still_executes_is_counted_until_it_finishes() -> None:
    """What the liveness phase reads before it calls a run quiet: a client that gave up
    (the engine's timeout) does not end Stripe's execution, and until it ends, a session
    may yet appear."""

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            fake = make_fake(tg, faults=StripeFaults(processing_s=400.0))
            client = fake.client(max_network_retries=0)
            assert fake.executing == 0
            with anyio.move_on_after(1.0) as scope:
                await create(client, key="k")
            assert scope.cancelled_caught
            assert fake.executing == 1 and not fake.sessions
            await anyio.sleep(398.0)
            assert fake.executing == 1
            await anyio.sleep(2.0)
            assert fake.executing == 0 and len(fake.sessions) == 1
            tg.cancel_scope.cancel()

    run(main)


def test_timeout_after_landing_still_creates_the_session() -> None:
    async def main() -> None:
        rec = Recorder()
        async with anyio.create_task_group() as tg:
            fake = make_fake(tg, faults=StripeFaults(base_latency_s=20.0), record=rec)
            client = fake.client()
            with anyio.move_on_after(15.0) as scope:  # lands at 10 s, answer due at 20 s
                await create(client)
            assert scope.cancelled_caught
            assert len(fake.sessions) == 1
            with anyio.move_on_after(5.0) as scope:  # cancelled on the way: never lands
                await create(client)
            assert scope.cancelled_caught
            await anyio.sleep(60)
            assert len(fake.sessions) == 1
            assert [r["stage"] for r in rec.of("stripe.client_gone")] == ["downlink", "uplink"]
            tg.cancel_scope.cancel()

    run(main)


def test_latency_spike_past_the_sdk_timeout_is_a_retried_connection_error() -> None:
    async def main() -> None:
        faults = StripeFaults(latency_spike_probability=1.0, latency_spike_s=200.0)
        async with anyio.create_task_group() as tg:
            fake = make_fake(tg, faults=faults)
            start = anyio.current_time()
            with pytest.raises(stripe.APIConnectionError):
                await create(fake.client(max_network_retries=1, timeout_s=80.0), key="k")
            assert 160 <= anyio.current_time() - start <= 162  # two 80 s timeouts + back-off
            assert len(fake.sessions) <= 1  # only a downlink spike lets a request land
            tg.cancel_scope.cancel()

    run(main)


def test_rate_limit_is_429_rate_limit_error_not_retried() -> None:
    async def main() -> None:
        rec = Recorder()
        async with anyio.create_task_group() as tg:
            fake = make_fake(tg, faults=StripeFaults(rate_limit_per_s=2.0), record=rec)
            client = fake.client(max_network_retries=2)
            await create(client)
            await create(client)
            with pytest.raises(stripe.RateLimitError) as info:
                await create(client)
            assert info.value.http_status == 429
            assert len(rec.of("stripe.request")) == 3  # the SDK did not retry the 429
            await anyio.sleep(1.0)
            await create(client)
            assert len(fake.sessions) == 3
            tg.cancel_scope.cancel()

    run(main)


def test_connection_errors_and_outage() -> None:
    async def main() -> None:
        rec = Recorder()
        async with anyio.create_task_group() as tg:
            faults = StripeFaults(connection_error_probability=1.0)
            fake = make_fake(tg, faults=faults, record=rec)
            client = fake.client(max_network_retries=2)
            with pytest.raises(stripe.APIConnectionError):
                await create(client)
            assert [r["fault"] for r in rec.of("stripe.request")] == ["connection_error"] * 3
            faults.connection_error_probability = 0.0
            faults.outage = True
            for _ in range(4):
                with pytest.raises((stripe.APIError, stripe.APIConnectionError)):
                    await create(client)
            assert {r["fault"] for r in rec.of("stripe.request")[3:]} == {"outage"}
            assert fake.sessions == {}
            faults.outage = False
            await create(client)
            tg.cancel_scope.cancel()

    run(main)


# ---- expiry


def test_sweeper_expires_sessions_at_expires_at_then_stops() -> None:
    async def main() -> None:
        rec = Recorder()
        async with anyio.create_task_group() as tg:
            fake = make_fake(tg, record=rec)
            client = fake.client()
            late = await create(client)  # 24 h
            soon = await create(client, expires_at=int(SIM_EPOCH) + 3600)
            paid = await create(client, expires_at=int(SIM_EPOCH) + 1800)
            await fake.customer_pay(paid.id)
            await anyio.sleep(3599)
            assert fake.sessions[soon.id].status == "open"
            await anyio.sleep(1)
            assert fake.sessions[soon.id].status == "expired"
            assert await fake.customer_pay(soon.id) is False
        # no cancel: the sweeper ends by itself once nothing open is left to expire
        assert anyio.current_time() == DAY
        expired = [e for e in fake.events if e["type"] == "checkout.session.expired"]
        assert [(e["data"]["object"]["id"], e["created"]) for e in expired] == [
            (soon.id, int(SIM_EPOCH) + 3600),
            (late.id, int(SIM_EPOCH) + DAY),
        ]
        assert fake.sessions[paid.id].status == "complete"
        assert rec.times("stripe.event")[-1] == DAY

    run(main)


# ---- the customer


def _pay(flow: str) -> tuple[FakeStripe, str]:
    async def main() -> tuple[FakeStripe, str]:
        async with anyio.create_task_group() as tg:
            fake = make_fake(tg)
            session = await create(fake.client())
            assert await fake.customer_pay(session.id, flow=flow)
            tg.cancel_scope.cancel()
        return fake, session.id

    return run(main)


def test_card_pays_now() -> None:
    fake, session_id = _pay("card")
    assert types(fake) == ["payment_intent.succeeded", "checkout.session.completed"]
    completed = fake.events[1]["data"]["object"]
    assert (completed["status"], completed["payment_status"]) == ("complete", "paid")
    intent = fake.events[0]["data"]["object"]
    assert completed["payment_intent"] == intent["id"]
    assert intent["metadata"] == {"purchase_id": "pur_1"}  # payment_intent_data only
    assert fake.paid_session_ids() == {session_id}


def test_decline_leaves_the_session_open() -> None:
    fake, session_id = _pay("decline")
    assert types(fake) == ["payment_intent.payment_failed"]
    intent = fake.events[0]["data"]["object"]
    assert intent["status"] == "requires_payment_method"
    assert intent["last_payment_error"]["code"] == "card_declined"
    assert intent["metadata"] == {"purchase_id": "pur_1"}
    assert fake.sessions[session_id].status == "open"
    assert fake.paid_session_ids() == set()


def test_decline_then_card_succeeds_on_the_same_session_and_intent() -> None:
    fake, session_id = _pay("decline_then_card")
    assert types(fake) == [
        "payment_intent.payment_failed",
        "payment_intent.succeeded",
        "checkout.session.completed",
    ]
    intents = {e["data"]["object"]["id"] for e in fake.events if e["type"].startswith("payment")}
    assert intents == {fake.sessions[session_id].payment_intent}
    assert fake.events[1]["created"] - fake.events[0]["created"] == 20
    assert fake.paid_session_ids() == {session_id}


def test_async_success_completes_unpaid_then_pays() -> None:
    fake, session_id = _pay("async_success")
    assert types(fake) == [
        "checkout.session.completed",
        "payment_intent.succeeded",
        "checkout.session.async_payment_succeeded",
    ]
    assert fake.events[0]["data"]["object"]["payment_status"] == "unpaid"
    assert fake.events[2]["data"]["object"]["payment_status"] == "paid"
    assert fake.events[2]["created"] - fake.events[0]["created"] == 120
    assert fake.paid_session_ids() == {session_id}


def test_async_failure_completes_unpaid_then_fails() -> None:
    fake, session_id = _pay("async_failure")
    assert types(fake) == [
        "checkout.session.completed",
        "payment_intent.payment_failed",
        "checkout.session.async_payment_failed",
    ]
    session = fake.sessions[session_id]
    assert (session.status, session.payment_status) == ("complete", "unpaid")
    assert fake.paid_session_ids() == set()


@pytest.mark.parametrize(
    ("flow", "charge_status", "details"),
    [
        ("card", "succeeded", {"type": "card", "last4": "4242"}),
        ("decline", "failed", {"type": "card", "last4": "0002"}),
        ("decline_then_card", "succeeded", {"type": "card", "last4": "4242"}),
        ("async_success", "succeeded", {"type": "us_bank_account", "last4": "6789"}),
        ("async_failure", "failed", {"type": "us_bank_account", "last4": "6789"}),
    ],
)
def test_an_intent_names_its_latest_charge_and_the_charge_what_paid(
    flow: str, charge_status: str, details: dict[str, str]
) -> None:
    """API >= 2022-11-15: `latest_charge` is the id of the last attempt's Charge, and the
    Charge's `payment_method_details` say what the customer paid with."""

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            fake = make_fake(tg)
            client = fake.client()
            session = await create(client, payment_method_types=["card", "us_bank_account"])
            assert await fake.customer_pay(session.id, flow=flow)
            intent_id = fake.sessions[session.id].payment_intent
            intent = await client.v1.payment_intents.retrieve_async(intent_id)
            charge = await client.v1.charges.retrieve_async(intent.latest_charge)
            assert (charge.payment_intent, charge.status) == (intent_id, charge_status)
            method = charge.payment_method_details
            assert method.type == details["type"]
            assert method[details["type"]].last4 == details["last4"]
            if details["type"] == "card":
                assert method.card.brand == "visa"
            # every event of the intent carries it, as Stripe's do
            events = [e["data"]["object"] for e in fake.events if e["type"].startswith("payment")]
            assert events and {e["latest_charge"] for e in events} == {charge.id}
            tg.cancel_scope.cancel()

    run(main)


def test_an_intent_before_its_first_attempt_has_no_latest_charge() -> None:
    intent = PaymentIntent(
        id="pi_1",
        status="requires_payment_method",
        amount=500,
        currency="usd",
        metadata={},
        created=0,
    )
    assert intent.to_json()["latest_charge"] is None and charge_json(intent) is None
    intent.last_payment_error = {"code": "card_declined"}
    assert intent.to_json()["latest_charge"] == charge_json(intent)["id"]  # type: ignore[index]


def test_unknown_flow_and_session_raise() -> None:
    async def main() -> None:
        async with anyio.create_task_group() as tg:
            fake = make_fake(tg)
            session = await create(fake.client())
            with pytest.raises(ValueError):
                await fake.customer_pay(session.id, flow="cash")
            with pytest.raises(KeyError):
                await fake.customer_pay("cs_nope")
            tg.cancel_scope.cancel()

    run(main)


# ---- signatures


def test_signature_verifies_with_the_sdk_and_only_with_the_secret() -> None:
    fake, _ = _pay("card")
    event = fake.events[1]
    payload = fake.event_payload(event)
    assert payload == fake.event_payload(event)  # deterministic bytes

    async def sign_later() -> str:
        await anyio.sleep(42)
        return fake.sign(payload)  # stamped with the virtual clock

    header = run(sign_later)
    assert header.startswith(f"t={int(SIM_EPOCH) + 42},v1=")
    verified = stripe.Webhook.construct_event(payload, header, SECRET, tolerance=0)
    assert verified.id == event["id"] and verified.type == "checkout.session.completed"
    assert verified.data.object.payment_status == "paid"
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(payload, header, "whsec_other", tolerance=0)
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(payload + b" ", header, SECRET, tolerance=0)
    forged = fake.sign(payload, secret="whsec_other", timestamp=123)
    assert forged.startswith("t=123,")
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(payload, forged, SECRET, tolerance=0)
