"""The fake Stripe honours what a session was created with, and refuses what Stripe refuses."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
import stripe

from simulator.fake_stripe import FakeStripe
from tests.stripehelpers import Recorder, make_fake, run, session_params


async def _create(fake: FakeStripe, **overrides: Any) -> Any:
    return await fake.client().v1.checkout.sessions.create_async(session_params(**overrides))


def _paid(flow: str, **overrides: Any) -> tuple[bool, FakeStripe, str, Recorder]:
    record = Recorder()

    async def main() -> tuple[bool, FakeStripe, str]:
        async with anyio.create_task_group() as tg:
            fake = make_fake(tg, record=record)
            session = await _create(fake, **overrides)
            paid = await fake.customer_pay(session.id, flow=flow, settle_after_s=5.0)
            tg.cancel_scope.cancel()
        return paid, fake, session.id

    paid, fake, session_id = run(main)
    return paid, fake, session_id, record


def test_a_card_only_session_cannot_be_paid_by_bank_debit() -> None:
    paid, fake, session_id, record = _paid("async_success", payment_method_types=["card"])
    assert paid is False
    assert fake.events == [] or all(e["type"] != "checkout.session.completed" for e in fake.events)
    assert fake.sessions[session_id].status == "open"
    results = [e["result"] for e in record.of("stripe.customer")]
    assert results == ["method_unavailable"]


def test_a_card_only_session_is_paid_by_card_and_shows_its_methods() -> None:
    paid, fake, session_id, _ = _paid("card", payment_method_types=["card"])
    assert paid is True
    completed = fake.events[-1]["data"]["object"]
    assert completed["payment_method_types"] == ["card"]
    assert completed["payment_status"] == "paid"


def test_a_bank_debit_only_session_refuses_a_card_and_takes_a_debit() -> None:
    assert _paid("card", payment_method_types=["us_bank_account"])[0] is False
    paid, fake, session_id, _ = _paid("async_success", payment_method_types=["us_bank_account"])
    assert paid is True and fake.sessions[session_id].payment_status == "paid"


def test_a_session_without_types_offers_the_accounts_methods() -> None:
    paid, fake, session_id, _ = _paid("async_failure")
    assert paid is True
    assert fake.sessions[session_id].payment_method_types == ["card", "us_bank_account"]


@pytest.mark.parametrize(
    ("overrides", "param", "code"),
    [
        ({"payment_method_types": ["cash"]}, "payment_method_types[0]", "parameter_invalid"),
        (
            {
                "line_items": [
                    {
                        "price_data": {
                            "currency": "xyz",
                            "unit_amount": 900,
                            "product_data": {"name": "p"},
                        },
                        "quantity": 1,
                    }
                ]
            },
            "line_items[0][price_data][currency]",
            "parameter_invalid",
        ),
        (
            {
                "line_items": [
                    {
                        "price_data": {
                            "currency": "usd",
                            "unit_amount": 49,
                            "product_data": {"name": "p"},
                        },
                        "quantity": 1,
                    }
                ]
            },
            "line_items",
            "amount_too_small",
        ),
        (
            {
                "line_items": [
                    {
                        "price_data": {
                            "currency": "usd",
                            "unit_amount": 100_000_000,
                            "product_data": {"name": "p"},
                        },
                        "quantity": 1,
                    }
                ]
            },
            "line_items",
            "amount_too_large",
        ),
        ({"client_reference_id": "x" * 201}, "client_reference_id", "parameter_invalid"),
        ({"mode": "setup"}, "mode", "parameter_invalid"),
    ],
)
def test_stripe_refuses_what_it_refuses(overrides: dict[str, Any], param: str, code: str) -> None:
    async def main() -> None:
        async with anyio.create_task_group() as tg:
            fake = make_fake(tg)
            with pytest.raises(stripe.InvalidRequestError) as info:
                await _create(fake, **overrides)
            assert (info.value.http_status, info.value.param, info.value.code) == (400, param, code)
            assert len(fake.sessions) == 0
            tg.cancel_scope.cancel()

    run(main)


def test_a_zero_decimal_currency_may_charge_one_unit() -> None:
    async def main() -> None:
        async with anyio.create_task_group() as tg:
            fake = make_fake(tg)
            item = {
                "price_data": {"currency": "jpy", "unit_amount": 1, "product_data": {"name": "p"}},
                "quantity": 1,
            }
            session = await _create(fake, line_items=[item])
            assert (session.amount_total, session.currency) == (1, "jpy")
            tg.cancel_scope.cancel()

    run(main)


def test_a_delayed_method_calls_back_when_the_session_completes_unpaid() -> None:
    seen: list[tuple[str, str]] = []

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            fake = make_fake(tg)
            session = await _create(fake)

            def submitted() -> None:
                s = fake.sessions[session.id]
                seen.append((s.status, s.payment_status))

            await fake.customer_pay(
                session.id, flow="async_success", settle_after_s=3 * 86400.0, on_submitted=submitted
            )
            assert fake.sessions[session.id].payment_status == "paid"
            tg.cancel_scope.cancel()

    run(main)
    assert seen == [("complete", "unpaid")]
