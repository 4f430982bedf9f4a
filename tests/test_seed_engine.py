"""The seed engine, path by path, against the fakes: it must work where the seed works and fail
exactly where the seed fails (SEED_FACTS.md §A), or the harness would test a different system."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from reference_impl import errors
from reference_impl.memory_locks import MemoryLockService
from reference_impl.ports import Engine, EngineConfig
from reference_impl.schema import program_doc
from reference_impl.seed_engine import SeedEngine
from reference_impl.seed_locks import SeedLockService
from simulator.services import FakeEmail
from tests.enginehelpers import World, run_virtual, world

USER = "user_1"
PROG = "prog_1"


async def _paid(w: World, session_id: str, flow: str = "card") -> dict[str, Any]:
    """Have the customer pay and return the `checkout.session.completed` event for it."""
    await w.fake.customer_pay(session_id, flow=flow)
    events = [
        e for e in w.events("checkout.session.completed") if e["data"]["object"]["id"] == session_id
    ]
    assert len(events) == 1
    return events[0]


def test_is_an_engine_with_the_seed_lock_and_no_sweeper() -> None:
    assert SeedEngine.memory_lock_service is SeedLockService

    async def main() -> None:
        async with world(SeedEngine) as w:
            assert isinstance(w.engine, Engine)
            await w.engine.reconcile()
            assert await w.purchases() == []

    run_virtual(main)


def test_happy_path_completes_once_and_fulfils_once() -> None:
    async def main() -> None:
        async with world(SeedEngine) as w:
            result = await w.engine.create_purchase(USER, PROG, class_rep=True)
            assert not result.reused
            assert result.session_id in w.fake.sessions
            assert (await w.program(PROG))["class_rep_count"] == 1
            [pending] = await w.purchases()
            assert pending["_id"] == result.purchase_id
            assert pending["status"] == "pending"
            assert pending["stripe_session_id"] == result.session_id

            event = await _paid(w, result.session_id)
            assert await w.deliver(event) == 200

            [done] = await w.purchases()
            assert done["status"] == "completed"
            intent = w.fake.sessions[result.session_id].payment_intent
            assert intent and done["stripe_payment_intent_id"] == intent
            assert [g.purchase_id for g in w.fulfilment.grants] == [result.purchase_id]
            assert [g.session_id for g in w.fulfilment.grants] == [result.session_id]
            assert [r.purchase_id for r in w.email.delivered] == [result.purchase_id]
            assert (await w.program(PROG))["class_rep_count"] == 1

    run_virtual(main)


def test_pending_purchase_is_returned_again() -> None:
    async def main() -> None:
        async with world(SeedEngine) as w:
            first = await w.engine.create_purchase(USER, PROG, class_rep=True)
            again = await w.engine.create_purchase(USER, PROG, class_rep=True)
            assert again.reused
            assert (again.purchase_id, again.session_id) == (first.purchase_id, first.session_id)
            assert len(await w.purchases()) == 1
            assert len(w.fake.sessions) == 1
            assert (await w.program(PROG))["class_rep_count"] == 1

    run_virtual(main)


def test_abandoned_session_keeps_its_seat_forever() -> None:
    async def main() -> None:
        programs = [program_doc(PROG, class_rep_limit=2)]
        async with world(SeedEngine, programs=programs) as w:
            first = await w.engine.create_purchase(USER, PROG, class_rep=True)
            await anyio.sleep(w.env.config.session_ttl + 60)
            await w.engine.reconcile()
            # no expired handler, no sweeper: the abandoned purchase still holds its seat
            [stale] = await w.purchases()
            assert stale["status"] == "pending"
            for event in w.events("checkout.session.expired"):
                assert await w.deliver(event) == 200
            assert (await w.program(PROG))["class_rep_count"] == 1
            second = await w.engine.create_purchase(USER, PROG, class_rep=True)
            assert not second.reused and second.purchase_id != first.purchase_id
            assert (await w.program(PROG))["class_rep_count"] == 2
            assert len(await w.purchases(status="pending")) == 2

    run_virtual(main)


def test_limit_reached() -> None:
    async def main() -> None:
        async with world(SeedEngine) as w:
            await w.engine.create_purchase("user_a", PROG, class_rep=True)
            with pytest.raises(errors.LimitReached):
                await w.engine.create_purchase("user_b", PROG, class_rep=True)
            assert (await w.program(PROG))["class_rep_count"] == 1
            assert await w.purchases(user_id="user_b") == []
            # a standard-price purchase is not capped
            await w.engine.create_purchase("user_b", PROG, class_rep=False)
            assert len(await w.purchases(user_id="user_b")) == 1

    run_virtual(main)


def test_already_purchased_is_refused_before_the_lock() -> None:
    async def main() -> None:
        async with world(SeedEngine) as w:
            result = await w.engine.create_purchase(USER, PROG, class_rep=False)
            assert await w.deliver(await _paid(w, result.session_id)) == 200
            with pytest.raises(errors.AlreadyPurchased):
                await w.engine.create_purchase(USER, PROG, class_rep=False)
            with pytest.raises(errors.NotFound):
                await w.engine.create_purchase(USER, "no_such_program", class_rep=False)

    run_virtual(main)


def test_stripe_failure_leaks_the_seat() -> None:
    async def main() -> None:
        async with world(SeedEngine) as w:
            w.fake.faults.outage = True
            with pytest.raises(errors.UpstreamError):
                await w.engine.create_purchase(USER, PROG, class_rep=True)
            assert await w.purchases() == []
            assert (await w.program(PROG))["class_rep_count"] == 1  # never given back
            w.fake.faults.outage = False
            with pytest.raises(errors.LimitReached):
                await w.engine.create_purchase("user_b", PROG, class_rep=True)

    run_virtual(main)


def test_lock_wait_timeout_is_busy() -> None:
    async def main() -> None:
        locks = MemoryLockService()
        config = EngineConfig(purchase_lock_timeout=10.0)
        async with world(SeedEngine, locks=locks, config=config) as w:
            held = anyio.Event()

            async def holder() -> None:
                async with locks.hold(f"purchase:create:{USER}:{PROG}", wait_timeout=1.0):
                    held.set()
                    await anyio.sleep(60)

            async with anyio.create_task_group() as tg:
                tg.start_soon(holder)
                await held.wait()
                start = anyio.current_time()
                with pytest.raises(errors.Busy):
                    await w.engine.create_purchase(USER, PROG, class_rep=True)
                assert anyio.current_time() - start == pytest.approx(10.0)
                tg.cancel_scope.cancel()
            assert await w.purchases() == []
            assert (await w.program(PROG))["class_rep_count"] == 0

    run_virtual(main)


def test_cancel_releases_the_seat_but_leaves_the_session_open() -> None:
    async def main() -> None:
        async with world(SeedEngine) as w:
            result = await w.engine.create_purchase(USER, PROG, class_rep=True)
            with pytest.raises(errors.NotFound):
                await w.engine.cancel_purchase("someone_else", result.purchase_id)
            await w.engine.cancel_purchase(USER, result.purchase_id)
            [cancelled] = await w.purchases()
            assert cancelled["status"] == "cancelled"
            assert (await w.program(PROG))["class_rep_count"] == 0
            assert w.fake.sessions[result.session_id].status == "open"
            with pytest.raises(errors.NotCancellable):
                await w.engine.cancel_purchase(USER, result.purchase_id)
            assert (await w.program(PROG))["class_rep_count"] == 0

    run_virtual(main)


def test_pay_after_cancel_completes_the_cancelled_purchase_past_the_limit() -> None:
    async def main() -> None:
        async with world(SeedEngine) as w:
            a = await w.engine.create_purchase("user_a", PROG, class_rep=True)
            await w.engine.cancel_purchase("user_a", a.purchase_id)
            b = await w.engine.create_purchase("user_b", PROG, class_rep=True)
            # user a pays in the tab that was left open
            assert await w.deliver(await _paid(w, a.session_id)) == 200
            assert await w.deliver(await _paid(w, b.session_id)) == 200
            completed = await w.purchases(status="completed", class_rep=True)
            assert sorted(p["_id"] for p in completed) == sorted([a.purchase_id, b.purchase_id])
            program = await w.program(PROG)
            assert program["class_rep_count"] == 1
            assert len(completed) > program["class_rep_limit"]
            assert len(w.fulfilment.grants) == 2

    run_virtual(main)


def test_duplicate_webhook_in_sequence_completes_once() -> None:
    async def main() -> None:
        async with world(SeedEngine) as w:
            result = await w.engine.create_purchase(USER, PROG, class_rep=True)
            event = await _paid(w, result.session_id)
            assert await w.deliver(event) == 200
            assert await w.deliver(event) == 200
            assert await w.deliver(event) == 200
            assert len(w.fulfilment.grants) == 1
            assert len(w.email.delivered) == 1
            assert len(await w.purchases(status="completed")) == 1

    run_virtual(main)


def test_three_callers_on_the_seed_lock_create_two_pending_purchases() -> None:
    """Waiters that saw one holder wake together and both pass the pending check."""

    async def main() -> None:
        async with world(SeedEngine, locks=SeedLockService()) as w:
            inner = w.env.store.observer

            class SlowReservation:
                async def before(self, collection: str, op: str, args: Any, kwargs: Any) -> None:
                    if op == "find_one_and_update":
                        await anyio.sleep(1.0)  # caller 1 holds the lock while reserving
                    await inner.before(collection, op, args, kwargs)

                def after(self, *args: Any) -> None:
                    inner.after(*args)

            w.env.store.observer = SlowReservation()
            outcomes: list[str] = []

            async def call(class_rep: bool) -> None:
                try:
                    r = await w.engine.create_purchase(USER, PROG, class_rep=class_rep)
                    outcomes.append("reused" if r.reused else "created")
                except errors.LimitReached:
                    outcomes.append("limit")

            await w.env.store.programs.update_one({"_id": PROG}, {"$set": {"class_rep_count": 1}})
            async with anyio.create_task_group() as tg:
                tg.start_soon(call, True)  # holds the lock, then fails: seats are full
                await anyio.sleep(0.5)
                tg.start_soon(call, False)
                tg.start_soon(call, False)
            assert sorted(outcomes) == ["created", "created", "limit"]
            assert len(await w.purchases(user_id=USER, status="pending")) == 2

    run_virtual(main)


def test_declined_payment_finds_no_purchase_and_the_seat_leaks() -> None:
    async def main() -> None:
        async with world(SeedEngine) as w:
            result = await w.engine.create_purchase(USER, PROG, class_rep=True)
            await w.fake.customer_pay(result.session_id, flow="decline")
            failed = w.events("payment_intent.payment_failed")
            assert failed
            for event in failed:
                assert await w.deliver(event) == 200
            [pending] = await w.purchases()
            assert pending["status"] == "pending"
            assert (await w.program(PROG))["class_rep_count"] == 1

    run_virtual(main)


def test_repeated_payment_failed_decrements_each_time() -> None:
    async def main() -> None:
        async with world(SeedEngine) as w:
            result = await w.engine.create_purchase(USER, PROG, class_rep=True)
            await w.fake.customer_pay(result.session_id, flow="decline")
            [event] = w.events("payment_intent.payment_failed")
            intent_id = event["data"]["object"]["id"]
            # the state in which the seed's handler finds the purchase: pending, intent known
            await w.env.store.purchases.update_one(
                {"_id": result.purchase_id}, {"$set": {"stripe_payment_intent_id": intent_id}}
            )
            assert await w.deliver(event) == 200
            assert (await w.program(PROG))["class_rep_count"] == 0
            assert await w.deliver(event) == 200  # Stripe redelivers the same event
            assert (await w.program(PROG))["class_rep_count"] == -1
            [pending] = await w.purchases()
            assert pending["status"] == "pending"  # status never changed

    run_virtual(main)


def test_bad_missing_or_stale_signature_is_400_and_changes_nothing() -> None:
    async def main() -> None:
        async with world(SeedEngine) as w:
            result = await w.engine.create_purchase(USER, PROG, class_rep=True)
            event = await _paid(w, result.session_id)
            payload = w.fake.event_payload(event)
            good = w.fake.sign(payload)
            forged = good.split(",v1=")[0] + ",v1=" + "0" * 64
            assert await w.engine.handle_webhook(payload, forged) == 400
            assert await w.engine.handle_webhook(payload, None) == 400
            assert await w.engine.handle_webhook(payload, "") == 400
            assert await w.engine.handle_webhook(payload + b" ", good) == 400
            await anyio.sleep(w.env.config.webhook_tolerance + 1)
            assert await w.engine.handle_webhook(payload, good) == 400  # stale
            [pending] = await w.purchases()
            assert pending["status"] == "pending"
            assert w.fulfilment.grants == [] and w.email.attempts == 0
            assert await w.deliver(event) == 200  # freshly signed, it goes through
            assert len(w.fulfilment.grants) == 1

    run_virtual(main)


def test_missing_purchase_is_acknowledged() -> None:
    async def main() -> None:
        async with world(SeedEngine) as w:
            session = await w.env.stripe.v1.checkout.sessions.create_async(
                {
                    "mode": "payment",
                    "line_items": [
                        {
                            "price_data": {
                                "currency": "usd",
                                "product_data": {"name": "stray"},
                                "unit_amount": 5000,
                            },
                            "quantity": 1,
                        }
                    ],
                    "success_url": "https://example.test/s",
                    "cancel_url": "https://example.test/c",
                }
            )
            assert await w.deliver(await _paid(w, session.id)) == 200
            assert w.fulfilment.grants == []
            assert await w.purchases() == []

    run_virtual(main)


def test_webhook_lock_timeout_is_500_so_stripe_retries() -> None:
    async def main() -> None:
        locks = MemoryLockService()
        async with world(SeedEngine, locks=locks) as w:
            result = await w.engine.create_purchase(USER, PROG, class_rep=True)
            event = await _paid(w, result.session_id)
            held = anyio.Event()

            async def holder() -> None:
                async with locks.hold(f"webhook:session:{result.session_id}", wait_timeout=1.0):
                    held.set()
                    await anyio.sleep(3600)

            async with anyio.create_task_group() as tg:
                tg.start_soon(holder)
                await held.wait()
                assert await w.deliver(event) == 500
                tg.cancel_scope.cancel()
            [pending] = await w.purchases()
            assert pending["status"] == "pending"
            assert await w.deliver(event) == 200
            assert len(w.fulfilment.grants) == 1

    run_virtual(main)


def test_email_failure_is_ignored() -> None:
    async def main() -> None:
        email = FakeEmail(fail=lambda: True)
        async with world(SeedEngine, email=email) as w:
            result = await w.engine.create_purchase(USER, PROG, class_rep=False)
            assert await w.deliver(await _paid(w, result.session_id)) == 200
            assert len(await w.purchases(status="completed")) == 1
            assert len(w.fulfilment.grants) == 1
            assert email.attempts == 1 and email.delivered == []

    run_virtual(main)


def test_unpaid_completion_is_fulfilled_and_a_failed_debit_changes_nothing() -> None:
    async def main() -> None:
        async with world(SeedEngine) as w:
            result = await w.engine.create_purchase(USER, PROG, class_rep=True)
            await w.fake.customer_pay(result.session_id, flow="async_failure")
            kinds = [e["type"] for e in w.fake.events]
            assert "checkout.session.completed" in kinds
            assert "payment_intent.payment_failed" in kinds
            for event in list(w.fake.events):
                assert await w.deliver(event) == 200
            assert w.fake.sessions[result.session_id].payment_status == "unpaid"
            # fulfilled without payment_status == "paid", and the failed debit takes nothing back
            [done] = await w.purchases()
            assert done["status"] == "completed"
            assert [g.session_id for g in w.fulfilment.grants] == [result.session_id]
            assert (await w.program(PROG))["class_rep_count"] == 1

    run_virtual(main)
