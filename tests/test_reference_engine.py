"""The reference engine, path by path, against the fake Stripe reached through the real SDK."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from reference_impl import errors
from reference_impl.memory_locks import MemoryLockService
from reference_impl.ports import Engine, EngineConfig
from reference_impl.reference_engine import (
    FULFILMENT_OWED,
    FULFILMENT_PAGE,
    RECEIPT_OWED,
    RECEIPT_PAGE,
    UNDELIVERED_MARK,
    ReferenceEngine,
)
from reference_impl.schema import program_doc
from reference_impl.seats import SeatLedger
from simulator.services import FakeEmail
from tests.enginehelpers import World, make_env, run_virtual, world

USER = "user_1"
PROG = "prog_1"


async def _pay_and_deliver(w: World, session_id: str, flow: str = "card") -> list[int]:
    before = len(w.fake.events)
    assert await w.fake.customer_pay(session_id, flow=flow)
    return [await w.deliver(e) for e in w.fake.events[before:]]


async def _count(w: World) -> int:
    return (await w.program(PROG))["class_rep_count"]


def test_happy_path_completes_fulfils_and_emails_once() -> None:
    async def main() -> None:
        async with world(ReferenceEngine) as w:
            assert isinstance(w.engine, Engine)
            result = await w.engine.create_purchase(USER, PROG, class_rep=True)
            assert await _count(w) == 1
            [p] = await w.purchases()
            assert p["status"] == "pending" and p["stripe_session_id"] == result.session_id
            assert set(await _pay_and_deliver(w, result.session_id)) == {200}
            [p] = await w.purchases()
            assert p["status"] == "completed"
            assert [g.purchase_id for g in w.fulfilment.grants] == [result.purchase_id]
            assert [r.purchase_id for r in w.email.delivered] == [result.purchase_id]
            assert await _count(w) == 1
            with pytest.raises(errors.AlreadyPurchased):
                await w.engine.create_purchase(USER, PROG, class_rep=True)

    run_virtual(main)


def test_create_is_idempotent_while_the_session_is_open() -> None:
    async def main() -> None:
        async with world(ReferenceEngine) as w:
            first = await w.engine.create_purchase(USER, PROG, class_rep=True)
            again = await w.engine.create_purchase(USER, PROG, class_rep=True)
            assert again.reused and again.purchase_id == first.purchase_id
            assert again.session_id == first.session_id
            assert len(w.fake.sessions) == 1 and await _count(w) == 1

    run_virtual(main)


def test_concurrent_double_click_creates_one_purchase_and_one_seat() -> None:
    async def main() -> None:
        async with world(ReferenceEngine, programs=[program_doc(PROG, class_rep_limit=5)]) as w:
            results: list[Any] = []

            async def click() -> None:
                results.append(await w.engine.create_purchase(USER, PROG, class_rep=True))

            async with anyio.create_task_group() as tg:
                for _ in range(5):
                    tg.start_soon(click)
            assert len({r.purchase_id for r in results}) == 1
            assert len(w.fake.sessions) == 1 and await _count(w) == 1

    run_virtual(main)


def test_limit_reached_takes_no_seat() -> None:
    async def main() -> None:
        async with world(ReferenceEngine) as w:
            await w.engine.create_purchase("a", PROG, class_rep=True)
            with pytest.raises(errors.LimitReached):
                await w.engine.create_purchase("b", PROG, class_rep=True)
            assert await _count(w) == 1
            assert len(await w.purchases()) == 1

    run_virtual(main)


def test_definite_stripe_failure_releases_the_seat_exactly_once() -> None:
    async def main() -> None:
        async with world(ReferenceEngine) as w:
            w.fake.faults.error_5xx_probability = 1.0
            with pytest.raises(errors.UpstreamError) as info:
                await w.engine.create_purchase(USER, PROG, class_rep=True)
            assert info.value.outcome_known
            [p] = await w.purchases()
            assert p["status"] == "failed"
            assert await _count(w) == 0
            w.fake.faults.error_5xx_probability = 0.0
            result = await w.engine.create_purchase(USER, PROG, class_rep=True)
            assert await _count(w) == 1 and result.session_id in w.fake.sessions

    run_virtual(main)


def test_timeout_after_stripe_committed_is_resolved_by_replaying_the_same_key() -> None:
    config = EngineConfig(stripe_timeout=2.0)

    async def main() -> None:
        async with world(ReferenceEngine, config=config, max_network_retries=0) as w:
            w.fake.faults.latency_spike_probability = 1.0
            w.fake.faults.latency_spike_s = 30.0
            with pytest.raises(errors.UpstreamError) as info:
                await w.engine.create_purchase(USER, PROG, class_rep=True)
            assert not info.value.outcome_known
            [p] = await w.purchases()
            assert p["status"] == "pending" and p["stripe_session_id"] is None
            assert await _count(w) == 1  # held: the outcome is unknown, nothing may be released
            await anyio.sleep(60)  # the request landed at Stripe meanwhile
            assert len(w.fake.sessions) == 1
            w.fake.faults.latency_spike_probability = 0.0
            result = await w.engine.create_purchase(USER, PROG, class_rep=True)
            assert len(w.fake.sessions) == 1, "the retry must replay, not create a second session"
            assert result.session_id in w.fake.sessions and result.purchase_id == p["_id"]

    run_virtual(main)


def test_reconcile_closes_an_intent_no_client_came_back_for() -> None:
    config = EngineConfig(stripe_timeout=2.0, reconcile_grace=600.0)

    async def main() -> None:
        async with world(ReferenceEngine, config=config, max_network_retries=0) as w:
            w.fake.faults.latency_spike_probability = 1.0
            w.fake.faults.latency_spike_s = 30.0
            with pytest.raises(errors.UpstreamError):
                await w.engine.create_purchase(USER, PROG, class_rep=True)
            w.fake.faults.latency_spike_probability = 0.0
            await w.engine.reconcile()  # within the grace: nothing happens
            assert (await w.purchases())[0]["status"] == "pending"
            await anyio.sleep(700)
            await w.engine.reconcile()
            [p] = await w.purchases()
            [session] = w.fake.sessions.values()
            assert session.status == "expired" and p["stripe_session_id"] == session.id
            assert p["status"] == "expired" and await _count(w) == 0

    run_virtual(main)


def test_concurrent_duplicate_deliveries_complete_once() -> None:
    async def main() -> None:
        async with world(ReferenceEngine) as w:
            result = await w.engine.create_purchase(USER, PROG, class_rep=True)
            await w.fake.customer_pay(result.session_id, flow="card")
            [event] = w.events("checkout.session.completed")
            statuses: list[int] = []

            async def deliver() -> None:
                statuses.append(await w.deliver(event))

            async with anyio.create_task_group() as tg:
                for _ in range(10):
                    tg.start_soon(deliver)
            assert statuses == [200] * 10
            assert len(w.fulfilment.grants) == 1 and len(w.email.delivered) == 1

    run_virtual(main)


def test_expiry_releases_the_seat_once_however_often_delivered() -> None:
    async def main() -> None:
        async with world(ReferenceEngine, config=EngineConfig(session_ttl=1800)) as w:
            await w.engine.create_purchase(USER, PROG, class_rep=True)
            await anyio.sleep(1801)
            [event] = w.events("checkout.session.expired")
            assert [await w.deliver(event) for _ in range(3)] == [200, 200, 200]
            assert (await w.purchases())[0]["status"] == "expired"
            assert await _count(w) == 0

    run_virtual(main)


def test_declined_card_keeps_the_seat_and_the_retry_completes() -> None:
    async def main() -> None:
        async with world(ReferenceEngine) as w:
            result = await w.engine.create_purchase(USER, PROG, class_rep=True)
            statuses = await _pay_and_deliver(w, result.session_id, flow="decline_then_card")
            assert set(statuses) == {200}
            assert "payment_intent.payment_failed" in {e["type"] for e in w.fake.events}
            assert (await w.purchases())[0]["status"] == "completed"
            assert await _count(w) == 1 and len(w.fulfilment.grants) == 1

    run_virtual(main)


def test_cancel_expires_the_session_first_so_nobody_pays_after() -> None:
    async def main() -> None:
        async with world(ReferenceEngine) as w:
            result = await w.engine.create_purchase(USER, PROG, class_rep=True)
            await w.engine.cancel_purchase(USER, result.purchase_id)
            assert w.fake.sessions[result.session_id].status == "expired"
            assert (await w.purchases())[0]["status"] == "cancelled"
            assert await _count(w) == 0
            assert not await w.fake.customer_pay(result.session_id, flow="card")
            with pytest.raises(errors.NotCancellable):
                await w.engine.cancel_purchase(USER, result.purchase_id)
            with pytest.raises(errors.NotFound):
                await w.engine.cancel_purchase("someone_else", result.purchase_id)

    run_virtual(main)


def test_a_paid_session_cannot_be_cancelled() -> None:
    async def main() -> None:
        async with world(ReferenceEngine) as w:
            result = await w.engine.create_purchase(USER, PROG, class_rep=True)
            await w.fake.customer_pay(result.session_id, flow="card")  # webhook not yet delivered
            with pytest.raises(errors.NotCancellable):
                await w.engine.cancel_purchase(USER, result.purchase_id)
            assert (await w.purchases())[0]["status"] == "pending"
            assert await _count(w) == 1

    run_virtual(main)


def test_a_second_click_finding_the_purchase_expired_by_the_first_is_a_cancel() -> None:
    """Regression (double-cancel-lost-answer): a double click's first cancel expires the
    session but Stripe's answer is lost ("outcome unknown" to the customer); the expiry event
    ends the purchase as expired; the second click found it not pending and answered "not
    cancellable", though the checkout the customer asked to close is closed."""

    async def main() -> None:
        async with world(ReferenceEngine) as w:
            result = await w.engine.create_purchase(USER, PROG, class_rep=True)
            assert w.fake.expire_now(result.session_id)  # as the first click's lost expire did
            [expired] = w.events("checkout.session.expired")
            assert await w.deliver(expired) == 200
            assert (await w.purchases())[0]["status"] == "expired"
            await w.engine.cancel_purchase(USER, result.purchase_id)  # no NotCancellable
            assert (await w.purchases())[0]["status"] == "cancelled"
            assert await _count(w) == 0  # the seat came back once
            with pytest.raises(errors.NotCancellable):  # a cancelled one stays refused
                await w.engine.cancel_purchase(USER, result.purchase_id)

    run_virtual(main)


def test_a_cancel_succeeds_when_its_own_expiry_event_lands_first() -> None:
    """Regression: the `checkout.session.expired` event a cancel's own expiry causes is often
    delivered before the cancel writes `cancelled` (it did in every CI cancel); the reference
    then answered "not cancellable: changed meanwhile" and kept the purchase as `expired`."""

    class ExpiryDeliveredFirst(ReferenceEngine):
        async def _cancel_session(self, session_id: str) -> bool:
            closed = await super()._cancel_session(session_id)
            [expired] = w.events("checkout.session.expired")
            assert await w.deliver(expired) == 200  # it ends the purchase as expired
            assert (await w.purchases())[0]["status"] == "expired"
            return closed

    async def main() -> None:
        nonlocal w
        async with world(ExpiryDeliveredFirst) as w:
            result = await w.engine.create_purchase(USER, PROG, class_rep=True)
            await w.engine.cancel_purchase(USER, result.purchase_id)  # no NotCancellable
            [purchase] = await w.purchases()
            assert purchase["status"] == "cancelled"
            assert await _count(w) == 0  # the seat came back once
            assert not await w.fake.customer_pay(result.session_id, flow="card")

    w: Any = None
    run_virtual(main)


def test_a_late_payment_noticed_twice_at_once_is_reseated_or_refunded_never_both() -> None:
    """Regression (found by scenarios/ci/late-payment-noticed-twice): two notices of one late
    payment on two instances, the last seat free. One re-seated and fulfilled it; the other,
    finding that seat taken, refunded the same payment: program and money both kept."""
    from tests.test_mutants import _Interpose, _observed, _second_instance

    engine = _observed(ReferenceEngine, _Interpose("none", "none", anyio.sleep))

    async def main() -> None:
        async with world(engine) as w:  # one seat, given back by the released purchase
            result, event = await _paid_but_released(w)
            other = await _second_instance(w, engine)
            payload = w.fake.event_payload(event)
            async with anyio.create_task_group() as tg:  # interleaved store call by store call
                for instance in (w.engine, other):
                    tg.start_soon(instance.handle_webhook, payload, w.fake.sign(payload))
            [purchase] = await w.purchases()
            refunded = list(w.fake.refunds)
            assert purchase["status"] in ("completed", "refunded")
            assert bool(refunded) == (purchase["status"] == "refunded"), purchase
            assert len(w.fulfilment.grants) == (purchase["status"] == "completed")
            assert await _count(w) == (purchase["status"] == "completed")

    run_virtual(main)


async def _paid_but_released(w: World) -> tuple[Any, dict[str, Any]]:
    """A purchase whose seat was given back (expired in our store) although the customer paid."""
    result = await w.engine.create_purchase(USER, PROG, class_rep=True)
    await w.fake.customer_pay(result.session_id, flow="card")
    [event] = w.events("checkout.session.completed")
    engine: Any = w.engine
    assert await engine._end_pending(result.purchase_id, "expired")
    return result, event


def test_late_payment_is_reseated_when_a_seat_is_free() -> None:
    async def main() -> None:
        async with world(ReferenceEngine) as w:
            result, event = await _paid_but_released(w)
            assert await _count(w) == 0
            assert await w.deliver(event) == 200
            [p] = await w.purchases()
            assert p["status"] == "completed" and await _count(w) == 1
            assert len(w.fulfilment.grants) == 1 and not w.fake.refunds

    run_virtual(main)


def test_late_payment_is_refunded_when_the_program_is_full() -> None:
    async def main() -> None:
        async with world(ReferenceEngine) as w:
            result, event = await _paid_but_released(w)
            await w.engine.create_purchase("other", PROG, class_rep=True)  # takes the last seat
            assert await w.deliver(event) == 200
            assert await w.deliver(event) == 200
            p = (await w.purchases(_id=result.purchase_id))[0]
            assert p["status"] == "refunded" and await _count(w) == 1
            assert len(w.fake.refunds) == 1 and not w.fulfilment.grants

    run_virtual(main)


def test_async_payment_waits_for_the_money() -> None:
    async def main() -> None:
        async with world(ReferenceEngine) as w:
            result = await w.engine.create_purchase(USER, PROG, class_rep=True)
            before = len(w.fake.events)
            await w.fake.customer_pay(result.session_id, flow="async_success")
            [completed] = [
                e for e in w.fake.events[before:] if e["type"] == "checkout.session.completed"
            ]
            assert completed["data"]["object"]["payment_status"] == "unpaid"
            assert await w.deliver(completed) == 200
            assert (await w.purchases())[0]["status"] == "pending" and not w.fulfilment.grants
            await anyio.sleep(7 * 86400)
            [succeeded] = w.events("checkout.session.async_payment_succeeded")
            assert await w.deliver(succeeded) == 200
            assert (await w.purchases())[0]["status"] == "completed"
            assert len(w.fulfilment.grants) == 1

    run_virtual(main)


def test_async_payment_failure_releases_the_seat() -> None:
    async def main() -> None:
        async with world(ReferenceEngine) as w:
            result = await w.engine.create_purchase(USER, PROG, class_rep=True)
            await w.fake.customer_pay(result.session_id, flow="async_failure")
            await anyio.sleep(7 * 86400)
            [failed] = w.events("checkout.session.async_payment_failed")
            assert [await w.deliver(failed) for _ in range(2)] == [200, 200]
            assert (await w.purchases())[0]["status"] == "failed" and await _count(w) == 0

    run_virtual(main)


def test_email_outage_never_loses_the_completion_and_reconcile_sends_once() -> None:
    down = {"now": True}
    email = FakeEmail(fail=lambda: down["now"])

    async def main() -> None:
        async with world(ReferenceEngine, email=email) as w:
            result = await w.engine.create_purchase(USER, PROG, class_rep=True)
            assert set(await _pay_and_deliver(w, result.session_id)) == {200}
            assert (await w.purchases())[0]["status"] == "completed"
            assert email.delivered == [] and email.attempts >= 1
            down["now"] = False
            await w.engine.reconcile()
            await w.engine.reconcile()
            assert len(email.delivered) == 1

    run_virtual(main)


def test_reconcile_reads_owed_receipts_a_page_at_a_time_and_stops_while_email_is_down() -> None:
    """An outage leaves receipts owed by the thousand: the sweep reads them a page at a time
    (memory for one page, not all), sends every page, and gives up at the first failure."""
    down = {"now": True}
    email = FakeEmail(fail=lambda: down["now"])
    owed = 2 * RECEIPT_PAGE + 50

    async def main() -> None:
        async with world(ReferenceEngine, email=email) as w:
            store = w.env.store.purchases
            await store.insert_many(
                [
                    {"_id": f"pur_{i:05d}", "user_id": f"user_{i}", "program_id": PROG}
                    | {"status": "completed", "receipt": RECEIPT_OWED}
                    for i in range(owed)
                ]
            )
            pages: list[int] = []
            engine_store: Any = w.engine.purchases  # type: ignore[attr-defined]
            find = engine_store.find

            def counted(*args: Any, **kwargs: Any) -> Any:
                if args and "receipt" in args[0]:
                    pages.append(kwargs.get("limit", 0))
                return find(*args, **kwargs)

            engine_store.find = counted
            await w.engine.reconcile()
            assert email.attempts == 1 and email.delivered == []  # down: the sweep gave up
            down["now"] = False
            await w.engine.reconcile()
            assert len(email.delivered) == owed
            assert {r.purchase_id for r in email.delivered} == {f"pur_{i:05d}" for i in range(owed)}
            assert await w.purchases(receipt=RECEIPT_OWED) == []
            assert pages == [RECEIPT_PAGE] * 4  # one read down; then two full pages and the rest

    run_virtual(main)


def test_success_redirect_racing_the_webhook_fulfils_once() -> None:
    async def main() -> None:
        async with world(ReferenceEngine) as w:
            result = await w.engine.create_purchase(USER, PROG, class_rep=True)
            await w.fake.customer_pay(result.session_id, flow="card")
            [event] = w.events("checkout.session.completed")
            engine: Any = w.engine
            async with anyio.create_task_group() as tg:
                tg.start_soon(w.deliver, event)
                tg.start_soon(engine.handle_success_redirect, result.session_id)
            assert len(w.fulfilment.grants) == 1
            assert (await w.purchases())[0]["status"] == "completed"

    run_virtual(main)


def test_bad_webhooks_get_400_and_change_nothing() -> None:
    async def main() -> None:
        async with world(ReferenceEngine) as w:
            result = await w.engine.create_purchase(USER, PROG, class_rep=True)
            await w.fake.customer_pay(result.session_id, flow="card")
            [event] = w.events("checkout.session.completed")
            payload = w.fake.event_payload(event)
            now = int(w.env.clock.now())
            bad = [
                (payload, w.fake.sign(payload, secret="whsec_wrong")),
                (payload, w.fake.sign(payload, timestamp=now - 301)),
                (payload, None),
                (payload, "garbage"),
                (payload + b" ", w.fake.sign(payload)),
                (b"not json", w.fake.sign(b"not json")),
                (b'{"id": "evt_x"}', w.fake.sign(b'{"id": "evt_x"}')),
            ]
            for body, header in bad:
                assert await w.engine.handle_webhook(body, header) == 400, header
            assert (await w.purchases())[0]["status"] == "pending"
            assert not w.fulfilment.grants
            # a signature from the future is accepted, as in the SDK
            assert (
                await w.engine.handle_webhook(payload, w.fake.sign(payload, timestamp=now + 600))
                == 200
            )

    run_virtual(main)


def test_unknown_event_types_are_acknowledged_and_ignored() -> None:
    async def main() -> None:
        async with world(ReferenceEngine) as w:
            body = b'{"id": "evt_1", "object": "event", "type": "customer.created", "data": {"object": {"id": "cus_1"}}}'
            assert await w.engine.handle_webhook(body, w.fake.sign(body)) == 200

    run_virtual(main)


def test_two_instances_with_separate_locks_still_keep_one_pending_purchase() -> None:
    async def main() -> None:
        async with world(ReferenceEngine, programs=[program_doc(PROG, class_rep_limit=5)]) as w:
            env2 = await make_env(
                stripe_client=w.env.stripe,
                store=w.env.store,
                locks=MemoryLockService(),
                clock=w.env.clock,
                fulfilment=w.fulfilment,
                email=w.email,
                instance="i1",
            )
            env2.ids = type(w.env.ids)("b")
            engines = [w.engine, ReferenceEngine(env2)]
            results: list[Any] = []

            async def click(engine: Any) -> None:
                try:
                    results.append(await engine.create_purchase(USER, PROG, class_rep=True))
                except errors.Busy:
                    results.append(None)

            async with anyio.create_task_group() as tg:
                for i in range(6):
                    tg.start_soon(click, engines[i % 2])
            pending = await w.purchases(status="pending")
            assert len(pending) == 1
            assert await _count(w) == 1
            assert {r.purchase_id for r in results if r} == {pending[0]["_id"]}

    run_virtual(main)


def test_reconcile_releases_an_orphan_seat_and_tombstones_its_id() -> None:
    config = EngineConfig(reconcile_grace=600.0)

    async def main() -> None:
        async with world(ReferenceEngine, config=config) as w:
            ledger = SeatLedger(w.env.store, w.env.ids, w.env.clock)
            program = await w.program(PROG)
            # a crash between reserving the seat and inserting the purchase
            assert await ledger.reserve(
                program, purchase_id="pur_lost", ref="seat_lost", at=w.env.clock.now()
            )
            await w.engine.reconcile()
            assert await _count(w) == 1, "within the grace the request may still be running"
            await anyio.sleep(601)
            await w.engine.reconcile()
            assert await _count(w) == 0
            [tomb] = await w.purchases(_id="pur_lost")
            assert tomb["status"] == "failed"
            await w.engine.reconcile()
            assert await _count(w) == 0

    run_virtual(main)


def test_reconcile_ends_pending_purchases_whose_expiry_event_was_lost() -> None:
    async def main() -> None:
        async with world(ReferenceEngine, config=EngineConfig(session_ttl=1800)) as w:
            await w.engine.create_purchase(USER, PROG, class_rep=True)
            await anyio.sleep(1900)  # the expiry event was never delivered
            await w.engine.reconcile()
            assert (await w.purchases())[0]["status"] == "expired" and await _count(w) == 0

    run_virtual(main)


def test_reconcile_vouches_for_sold_seats_and_still_releases_a_seat_in_doubt() -> None:
    """A seat owned by a completed purchase is vouched for at the first sweep after the grace
    and never audited again; a seat whose purchase left a seat-holding status without giving it
    back (a crash between the two writes) is still released."""
    config = EngineConfig(reconcile_grace=600.0)

    async def main() -> None:
        programs = (program_doc(PROG, class_rep_limit=2),)
        async with world(ReferenceEngine, config=config, programs=programs) as w:
            sold = await w.engine.create_purchase(USER, PROG, class_rep=True)
            await _pay_and_deliver(w, sold.session_id)
            lost = await w.engine.create_purchase("user_2", PROG, class_rep=True)
            # the transition out of pending landed; the release that follows it did not
            await w.env.store.purchases.update_one(
                {"_id": lost.purchase_id}, {"$set": {"status": "failed"}}
            )
            assert await _count(w) == 2
            await anyio.sleep(601)
            await w.engine.reconcile()
            holds = {h["_id"]: h for h in await w.env.store.seat_holds.find({}).to_list()}
            [done] = await w.purchases(_id=sold.purchase_id)
            assert "audit" not in holds[done["seat_ref"]]  # vouched: sold for good
            ledger = SeatLedger(w.env.store, w.env.ids, w.env.clock)
            assert await ledger.in_doubt(before=w.env.clock.now()) == []
            assert await _count(w) == 1  # the seat in doubt was given back
            assert [h["ref"] for _, h in await ledger.holders()] == [done["seat_ref"]]

    run_virtual(main)


def test_a_stripe_answer_is_taken_as_the_json_the_sdk_parsed_not_rebuilt(monkeypatch: Any) -> None:
    """`stripe_json` is the body the SDK parsed (equal to `to_dict()`), without its walk."""
    import stripe

    from reference_impl.reference_engine import stripe_json

    async def main() -> None:
        async with world(ReferenceEngine) as w:
            session = await w.env.stripe.v1.checkout.sessions.retrieve_async(
                (await w.engine.create_purchase(USER, PROG, class_rep=False)).session_id
            )
            expected = session.to_dict()

            def walked(self: Any) -> Any:
                raise AssertionError("to_dict() walked the object tree")

            monkeypatch.setattr(stripe.StripeObject, "to_dict", walked)
            assert stripe_json(session) == expected

    run_virtual(main)


def test_a_refund_retried_with_a_fresh_key_after_a_stored_500_is_made_once() -> None:
    """A refund whose first attempt Stripe answered 500 is retried with another key; if the
    first one was made after all, Stripe refuses the second as charge_already_refunded, which
    the engine takes as made (no second refund, nothing owed)."""

    async def main() -> None:
        async with world(ReferenceEngine) as w:
            result = await w.engine.create_purchase(USER, PROG, class_rep=False)
            await _pay_and_deliver(w, result.session_id)
            session = await w.env.stripe.v1.checkout.sessions.retrieve_async(result.session_id)
            plain = session.to_dict()
            await w.env.stripe.v1.refunds.create_async({"payment_intent": plain["payment_intent"]})
            await w.env.store.purchases.update_one(
                {"_id": result.purchase_id},
                {"$set": {"refund_owed": result.session_id, "refund_attempt": 1}},
            )
            engine: Any = w.engine
            await engine._pay_back(plain, result.purchase_id)
            [purchase] = await w.purchases()
            assert "refund_owed" not in purchase
            assert len(w.fake.refunds) == 1

    run_virtual(main)


class _DiesAtGrant:
    """The fulfilment port of an instance that dies at its next grant: before the grant lands
    (`landed=False`) or just after it (`landed=True`)."""

    def __init__(self, inner: Any, landed: bool) -> None:
        self.inner, self.landed, self.armed = inner, landed, True

    async def grant(self, **kwargs: Any) -> None:
        if self.armed and not self.landed:
            self.armed = False
            raise RuntimeError("instance died before the grant")
        await self.inner.grant(**kwargs)
        if self.armed:
            self.armed = False
            raise RuntimeError("instance died after the grant")


@pytest.mark.parametrize("landed", [False, True], ids=["before-the-grant", "after-the-grant"])
def test_a_grant_a_crash_stopped_is_made_by_the_sweep_exactly_once(landed: bool) -> None:
    """The purchase is completed in the store, then the request dies at the grant: its
    `fulfilment` stays owed, and the sweep grants under the same idempotency key, so a grant
    that did land before the crash is not made twice. A retried event finds it completed."""

    async def main() -> None:
        async with world(ReferenceEngine) as w:
            w.env.fulfilment = _DiesAtGrant(w.fulfilment, landed)
            result = await w.engine.create_purchase(USER, PROG, class_rep=True)
            assert await w.fake.customer_pay(result.session_id, flow="card")
            [completed] = w.events("checkout.session.completed")
            assert await w.deliver(completed) == 500  # the request died: Stripe will retry
            [p] = await w.purchases()
            assert p["status"] == "completed" and p["fulfilment"] == FULFILMENT_OWED
            assert len(w.fulfilment.grants) == (1 if landed else 0)
            assert await w.deliver(completed) == 200  # Stripe's retry: a duplicate now
            await w.engine.reconcile()
            await w.engine.reconcile()
            assert [g.purchase_id for g in w.fulfilment.grants] == [result.purchase_id]
            assert [r.purchase_id for r in w.email.delivered] == [result.purchase_id]
            [p] = await w.purchases()
            assert "fulfilment" not in p and "receipt" not in p

    run_virtual(main)


def test_a_grant_settles_with_its_receipt_or_alone_when_the_email_fails() -> None:
    """The completing path's grant is settled by the receipt's write (no extra store call); a
    refused receipt settles the grant alone and leaves the receipt owed."""
    down = {"now": True}
    email = FakeEmail(fail=lambda: down["now"])

    async def main() -> None:
        async with world(ReferenceEngine, email=email) as w:
            result = await w.engine.create_purchase(USER, PROG, class_rep=True)
            assert set(await _pay_and_deliver(w, result.session_id)) == {200}
            [p] = await w.purchases()
            assert "fulfilment" not in p and p["receipt"] == RECEIPT_OWED
            down["now"] = False
            await w.engine.reconcile()
            assert len(w.fulfilment.grants) == 1 and len(email.delivered) == 1

    run_virtual(main)


def test_reconcile_grants_what_is_owed_a_page_at_a_time_each_once() -> None:
    """A crash of every instance can leave grants owed by the hundred: the sweep reads them a
    page at a time and grants each under its completion's key; a second sweep grants nothing."""
    owed = 2 * FULFILMENT_PAGE + 50

    async def main() -> None:
        async with world(ReferenceEngine) as w:
            await w.env.store.purchases.insert_many(
                [
                    {"_id": f"pur_{i:05d}", "user_id": f"user_{i}", "program_id": PROG}
                    | {"status": "completed", "stripe_session_id": f"cs_{i}"}
                    | {"fulfilment": FULFILMENT_OWED, "grant_key": f"grant_{i}"}
                    for i in range(owed)
                ]
            )
            await w.engine.reconcile()
            await w.engine.reconcile()
            assert sorted(g.purchase_id for g in w.fulfilment.grants) == [
                f"pur_{i:05d}" for i in range(owed)
            ]
            assert await w.purchases(fulfilment=FULFILMENT_OWED) == []
            assert len(w.email.delivered) == owed

    run_virtual(main)


def test_a_cancelled_purchase_an_earlier_release_left_payable_is_watched_and_honoured() -> None:
    """The reference's own cancel expires the session first and says so (`session_closed`):
    never watched. A cancelled purchase without that mark and with a live session (what a
    release that cancelled without expiring left) is watched; paid with its event never
    delivered, the sweep learns it from Stripe, honours it, and stops watching."""

    async def main() -> None:
        async with world(ReferenceEngine) as w:
            store = w.env.store.purchases
            own = await w.engine.create_purchase("user_own", PROG, class_rep=False)
            await w.engine.cancel_purchase("user_own", own.purchase_id)
            legacy = await w.engine.create_purchase("user_old", PROG, class_rep=False)
            # an earlier release's cancel: the status only, the session left open
            await store.update_one({"_id": legacy.purchase_id}, {"$set": {"status": "cancelled"}})
            assert await w.fake.customer_pay(legacy.session_id, flow="card")  # no event sent
            await w.engine.reconcile()
            mine = await store.find_one({"_id": own.purchase_id})
            assert mine["session_closed"] is True and "watch" not in mine
            old = await store.find_one({"_id": legacy.purchase_id})
            assert old["status"] == "completed" and "watch" not in old
            assert [g.purchase_id for g in w.fulfilment.grants] == [legacy.purchase_id]

    run_virtual(main)


def test_a_foreign_payment_whose_events_were_never_delivered_is_read_from_stripe_and_kept() -> None:
    """A session the engine never issued, paid while no event reached the engine: the sweep
    lists Stripe's undelivered events once they are older than the grace, keeps the payment
    for a human, and moves its mark past them. An undelivered event about one of its own
    sessions is left to the sweeps that ask Stripe about those (no dead letter for it)."""
    config = EngineConfig(reconcile_grace=600.0)

    async def main() -> None:
        async with world(ReferenceEngine, config=config) as w:
            marks = w.env.store.sweep_marks
            letters = w.env.store.webhook_dead_letters
            own = await w.engine.create_purchase("user_own", PROG, class_rep=False)
            assert await w.fake.customer_pay(own.session_id, flow="card")  # no event sent
            foreign = w.fake.foreign_session(
                amount_total=5000,
                currency="usd",
                mode="payment",
                client_reference_id=None,
                metadata={"purchase_id": own.purchase_id},
                expires_at=int(w.env.clock.now()) + 3600,
            )
            assert await w.fake.customer_pay(foreign.id, flow="card")
            await w.engine.reconcile()  # the events are younger than the grace: not read yet
            assert await letters.count_documents({}) == 0
            assert await marks.find_one({"_id": UNDELIVERED_MARK}) is None
            await anyio.sleep(601)
            await w.engine.reconcile()
            [kept] = await letters.find({}).to_list()
            assert kept["session_id"] == foreign.id and kept["payment_intent"] is not None
            mark = await marks.find_one({"_id": UNDELIVERED_MARK})
            assert mark is not None and mark["until"] == int(w.env.clock.now() - 600)
            await anyio.sleep(600)  # a grace later the instance lists again
            await w.engine.reconcile()  # nothing new in its window: the mark is not written
            assert await marks.find_one({"_id": UNDELIVERED_MARK}) == mark
            # its own paid session: completed by the hourly recheck, not the event replay
            bought = await w.env.store.purchases.find_one({"_id": own.purchase_id})
            assert bought["status"] == "pending"
            await anyio.sleep(3600)
            await w.engine.reconcile()
            bought = await w.env.store.purchases.find_one({"_id": own.purchase_id})
            assert bought["status"] == "completed"
            assert [g.purchase_id for g in w.fulfilment.grants] == [own.purchase_id]
            assert await letters.count_documents({}) == 1

    run_virtual(main)


def test_an_undelivered_event_the_engine_could_not_take_is_read_again() -> None:
    """The session's lock is held past its timeout when the sweep reads the foreign payment's
    event: the mark stays before it, and the next listing, a grace later, keeps the payment."""
    config = EngineConfig(reconcile_grace=600.0, webhook_lock_timeout=1.0)

    async def main() -> None:
        async with world(ReferenceEngine, config=config) as w:
            foreign = w.fake.foreign_session(
                amount_total=5000,
                currency="usd",
                mode="payment",
                client_reference_id=None,
                metadata={},
                expires_at=int(w.env.clock.now()) + 3600,
            )
            assert await w.fake.customer_pay(foreign.id, flow="card")
            await anyio.sleep(601)
            letters = w.env.store.webhook_dead_letters
            async with w.env.locks.hold(f"webhook:session:{foreign.id}", wait_timeout=5.0):
                await w.engine.reconcile()
            assert await letters.count_documents({}) == 0
            mark = await w.env.store.sweep_marks.find_one({"_id": UNDELIVERED_MARK})
            assert mark is not None and mark["until"] <= w.fake.events[0]["created"]
            await w.engine.reconcile()  # the instance lists once per grace: not yet
            assert await letters.count_documents({}) == 0
            await anyio.sleep(600)
            await w.engine.reconcile()
            assert [d["session_id"] for d in await letters.find({}).to_list()] == [foreign.id]

    run_virtual(main)
