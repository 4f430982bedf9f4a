"""The seed engine, path by path, against the fakes: it must work where the seed works and fail
exactly where the seed fails (docs/seed-design.md), or the harness would test a different system."""

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
            # L131-149: the card, from the intent's latest charge (one Stripe call more)
            assert done["payment_method"] == {"type": "card", "card_brand": "visa", "last4": "4242"}
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


def test_cancel_deletes_the_purchase_and_leaves_the_session_open() -> None:
    async def main() -> None:
        async with world(SeedEngine) as w:
            result = await w.engine.create_purchase(USER, PROG, class_rep=True)
            with pytest.raises(errors.PurchaseError) as other:
                await w.engine.cancel_purchase("someone_else", result.purchase_id)
            assert other.value.http_status == 403  # L828-837
            await w.engine.cancel_purchase(USER, result.purchase_id)
            assert await w.purchases() == []  # L860: deleted, not marked
            assert (await w.program(PROG))["class_rep_count"] == 0
            assert w.fake.sessions[result.session_id].status == "open"
            with pytest.raises(errors.NotFound):
                await w.engine.cancel_purchase(USER, result.purchase_id)
            assert (await w.program(PROG))["class_rep_count"] == 0

    run_virtual(main)


def test_pay_after_cancel_is_a_lost_payment_and_the_seat_goes_to_another() -> None:
    async def main() -> None:
        async with world(SeedEngine) as w:
            a = await w.engine.create_purchase("user_a", PROG, class_rep=True)
            await w.engine.cancel_purchase("user_a", a.purchase_id)
            b = await w.engine.create_purchase("user_b", PROG, class_rep=True)
            # user a pays in the tab that was left open: the webhook finds no purchase, says 200
            assert await w.deliver(await _paid(w, a.session_id)) == 200
            assert w.fake.sessions[a.session_id].payment_status == "paid"
            assert await w.purchases(stripe_session_id=a.session_id) == []
            assert await w.deliver(await _paid(w, b.session_id)) == 200
            [done] = await w.purchases(status="completed")
            assert done["_id"] == b.purchase_id
            assert [g.purchase_id for g in w.fulfilment.grants] == [b.purchase_id]
            assert (await w.program(PROG))["class_rep_count"] == 1

    run_virtual(main)


def test_cancel_between_read_and_save_makes_the_completion_fail_then_vanish() -> None:
    """Mongoose `save()` matches by `_id` only: a purchase deleted meanwhile is a
    DocumentNotFoundError (500), and Stripe's retry then finds nothing and gets 200."""

    async def main() -> None:
        async with world(SeedEngine) as w:
            result = await w.engine.create_purchase(USER, PROG, class_rep=True)
            event = await _paid(w, result.session_id)
            inner = w.env.store.observer

            class CancelBeforeSave:
                async def before(self, collection: str, op: str, args: Any, kwargs: Any) -> None:
                    if collection == "purchases" and op == "update_one":
                        w.env.store.observer = inner
                        await w.engine.cancel_purchase(USER, result.purchase_id)
                    await inner.before(collection, op, args, kwargs)

                def after(self, *args: Any) -> None:
                    inner.after(*args)

            w.env.store.observer = CancelBeforeSave()
            assert await w.deliver(event) == 500
            assert await w.deliver(event) == 200
            assert await w.purchases() == []
            assert w.fulfilment.grants == []
            assert w.fake.sessions[result.session_id].payment_status == "paid"

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


def test_three_callers_on_the_seed_lock_both_waiters_run_the_critical_section() -> None:
    """Waiters that saw one holder wake together and both pass the pending check: both create
    a Checkout Session; their purchases either both land (two pending) or collide on the order
    number they computed at once (one 500)."""

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
                except errors.PurchaseError as exc:
                    outcomes.append(exc.code)

            await w.env.store.programs.update_one({"_id": PROG}, {"$set": {"class_rep_count": 1}})
            async with anyio.create_task_group() as tg:
                tg.start_soon(call, True)  # holds the lock, then fails: seats are full
                await anyio.sleep(0.5)
                tg.start_soon(call, False)
                tg.start_soon(call, False)
            assert len(w.fake.sessions) == 2
            assert sorted(outcomes) in (
                ["created", "created", "limit_reached"],
                ["created", "internal", "limit_reached"],
            )
            pending = await w.purchases(user_id=USER, status="pending")
            assert len(pending) == outcomes.count("created")

    run_virtual(main)


def test_concurrent_creates_collide_on_the_order_number() -> None:
    """Purchase.ts:L196-218 reads the day's highest order number and adds one; two purchases
    computing it at once write the same number, and the unique index refuses the second: a 500
    after the seat was reserved and the session created, neither undone."""

    async def main() -> None:
        programs = [program_doc(PROG, class_rep_limit=5)]
        async with world(SeedEngine, programs=programs) as w:
            inner = w.env.store.observer

            class SlowInsert:
                async def before(self, collection: str, op: str, args: Any, kwargs: Any) -> None:
                    if op == "insert_one":
                        await anyio.sleep(1.0)  # both have read the latest order number
                    await inner.before(collection, op, args, kwargs)

                def after(self, *args: Any) -> None:
                    inner.after(*args)

            w.env.store.observer = SlowInsert()
            outcomes: list[str] = []

            async def call(user: str) -> None:
                try:
                    await w.engine.create_purchase(user, PROG, class_rep=True)
                    outcomes.append("created")
                except errors.PurchaseError as exc:
                    outcomes.append(f"{exc.code}:{exc.http_status}")

            async with anyio.create_task_group() as tg:
                tg.start_soon(call, "user_a")
                tg.start_soon(call, "user_b")
            assert sorted(outcomes) == ["created", "internal:500"]
            [only] = await w.purchases()
            assert only["order_number"].endswith("-00001")
            assert len(w.fake.sessions) == 2  # one session no purchase references
            assert (await w.program(PROG))["class_rep_count"] == 2  # one seat leaked

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


def test_payment_failed_on_a_tagged_pending_purchase_releases_once_and_marks_failed() -> None:
    """L276-290: a pending class-rep purchase carrying the intent gives its seat back once and
    becomes `failed`; a redelivery finds it failed and changes nothing. (Only a completion tags
    a purchase with its intent, so the seed never reaches this state by itself.)"""

    async def main() -> None:
        async with world(SeedEngine) as w:
            result = await w.engine.create_purchase(USER, PROG, class_rep=True)
            await w.fake.customer_pay(result.session_id, flow="decline")
            [event] = w.events("payment_intent.payment_failed")
            intent_id = event["data"]["object"]["id"]
            await w.env.store.purchases.update_one(
                {"_id": result.purchase_id}, {"$set": {"stripe_payment_intent_id": intent_id}}
            )
            assert await w.deliver(event) == 200
            assert await w.deliver(event) == 200
            assert (await w.program(PROG))["class_rep_count"] == 0
            [failed] = await w.purchases()
            assert failed["status"] == "failed"

    run_virtual(main)


def test_late_payment_failed_turns_a_paid_completed_purchase_into_failed() -> None:
    """L289-290 set `failed` whatever the status: the decline's event, delivered after the
    second card's completion, takes the paid purchase (and its access) away; the seat stays
    counted. A later `payment_intent.succeeded` (L248-256) would set it back."""

    async def main() -> None:
        async with world(SeedEngine) as w:
            result = await w.engine.create_purchase(USER, PROG, class_rep=True)
            await w.fake.customer_pay(result.session_id, flow="decline_then_card")
            [failure] = w.events("payment_intent.payment_failed")
            [success] = w.events("payment_intent.succeeded")
            [completion] = w.events("checkout.session.completed")
            assert await w.deliver(completion) == 200
            assert await w.deliver(failure) == 200  # late
            [purchase] = await w.purchases()
            assert purchase["status"] == "failed"
            assert w.fake.sessions[result.session_id].payment_status == "paid"
            assert (await w.program(PROG))["class_rep_count"] == 1
            assert len(w.fulfilment.grants) == 1
            assert await w.deliver(success) == 200
            [purchase] = await w.purchases()
            assert purchase["status"] == "completed"
            assert len(w.fulfilment.grants) == 1 and len(w.email.delivered) == 1

    run_virtual(main)


def test_payment_intent_succeeded_before_completion_finds_nothing() -> None:
    async def main() -> None:
        async with world(SeedEngine) as w:
            result = await w.engine.create_purchase(USER, PROG, class_rep=True)
            await w.fake.customer_pay(result.session_id, flow="card")
            [success] = w.events("payment_intent.succeeded")
            assert await w.deliver(success) == 200
            [pending] = await w.purchases()
            assert pending["status"] == "pending"  # found by an intent id only completion sets

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


def test_retrieve_error_creates_a_second_purchase_and_a_second_seat() -> None:
    """L86-106: any error of the session retrieve is taken for "invalid": the user's pending
    purchase (and its seat and open session) stays, and a second one is made."""

    async def main() -> None:
        programs = [program_doc(PROG, class_rep_limit=3)]
        async with world(SeedEngine, programs=programs, max_network_retries=0) as w:
            first = await w.engine.create_purchase(USER, PROG, class_rep=True)
            w.fake.faults.outage = True
            with pytest.raises(errors.UpstreamError):  # the create fails too, after the retrieve
                await w.engine.create_purchase(USER, PROG, class_rep=True)
            w.fake.faults.outage = False
            assert (await w.program(PROG))["class_rep_count"] == 2  # the failed create's seat

            retrieve = w.env.stripe.v1.checkout.sessions.retrieve_async
            calls: list[str] = []

            async def failing_retrieve(session_id: str, *args: Any, **kwargs: Any) -> Any:
                calls.append(session_id)
                raise RuntimeError("network")

            w.env.stripe.v1.checkout.sessions.retrieve_async = failing_retrieve  # type: ignore[method-assign]
            second = await w.engine.create_purchase(USER, PROG, class_rep=True)
            w.env.stripe.v1.checkout.sessions.retrieve_async = retrieve  # type: ignore[method-assign]
            assert calls == [first.session_id]
            assert not second.reused and second.purchase_id != first.purchase_id
            assert len(await w.purchases(user_id=USER, status="pending")) == 2
            assert w.fake.sessions[first.session_id].status == "open"
            assert (await w.program(PROG))["class_rep_count"] == 3

    run_virtual(main)


def test_a_paid_session_not_yet_completed_is_handed_out_again() -> None:
    """L93: only `expired` is refused, so a session already paid (webhook not yet processed)
    is returned to the user who clicks Buy again."""

    async def main() -> None:
        async with world(SeedEngine) as w:
            first = await w.engine.create_purchase(USER, PROG, class_rep=True)
            await w.fake.customer_pay(first.session_id, flow="card")
            assert w.fake.sessions[first.session_id].status == "complete"
            again = await w.engine.create_purchase(USER, PROG, class_rep=True)
            assert again.reused and again.session_id == first.session_id

    run_virtual(main)


def test_a_limit_of_zero_reserves_nothing_and_cancel_still_decrements() -> None:
    """Program.ts:L168-176 "0 means unlimited": L110-114 reserve nothing, but cancel
    (L849-858) decrements for every class-rep purchase: the count goes negative."""

    async def main() -> None:
        programs = [program_doc(PROG, class_rep_limit=0)]
        async with world(SeedEngine, programs=programs) as w:
            a = await w.engine.create_purchase("user_a", PROG, class_rep=True)
            await w.engine.create_purchase("user_b", PROG, class_rep=True)
            assert (await w.program(PROG))["class_rep_count"] == 0
            await w.engine.cancel_purchase("user_a", a.purchase_id)
            assert (await w.program(PROG))["class_rep_count"] == -1

    run_virtual(main)


def test_pending_page_deletes_old_and_redundant_purchases_and_keeps_their_seats() -> None:
    """L368-374 delete pending purchases older than 24 h; L390-425 those of a program the user
    completed; neither gives the seat back nor expires the session."""

    async def main() -> None:
        programs = [program_doc(PROG, class_rep_limit=5), program_doc("prog_2", class_rep_limit=5)]
        async with world(SeedEngine, programs=programs) as w:
            page = w.engine.list_pending_purchases  # type: ignore[attr-defined]
            old = await w.engine.create_purchase(USER, "prog_2", class_rep=True)
            await anyio.sleep(24 * 3600 + 60)
            paid = await w.engine.create_purchase(USER, PROG, class_rep=True)
            assert await w.deliver(await _paid(w, paid.session_id)) == 200
            # a second pending purchase of the completed program (left by the seed's lock)
            await w.env.store.purchases.insert_one(
                {
                    "_id": "pur_extra",
                    "user_id": USER,
                    "program_id": PROG,
                    "class_rep": True,
                    "status": "pending",
                    "stripe_session_id": "cs_extra",
                    "created_at": w.env.clock.now(),
                }
            )
            assert await page(USER) == []
            left = await w.purchases(user_id=USER)
            assert [p["_id"] for p in left] == [paid.purchase_id]
            assert (await w.program("prog_2"))["class_rep_count"] == 1  # seat never returned
            assert old.purchase_id not in {p["_id"] for p in left}
            assert await page("someone_else") == []

    run_virtual(main)


def test_uses_stripe_node_client_defaults() -> None:
    from reference_impl.ports import StripeClientSettings

    assert SeedEngine.stripe_client_settings == StripeClientSettings(
        timeout_s=80.0, max_network_retries=1
    )
