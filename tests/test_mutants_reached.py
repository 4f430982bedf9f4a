"""The mutants of the reference paths the CI suite reaches since issue 12, each shown directly.

As in test_mutants.py: one scenario function per mutant, run on the mutant (`bug=True`: the
harm shows) and on `ReferenceEngine` (`bug=False`: it does not). The CI scenario that catches
each one is named in its docstring (simulator/mutants.py); tests/test_suite_verdicts.py proves
the suite catches it.
"""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest

from reference_impl import errors
from reference_impl.ports import EngineConfig
from reference_impl.schema import SEAT_HOLDS, SLOTS, program_doc
from reference_impl.seats import HOLD_HELD, HOLD_RELEASED, MOVES, hold_doc
from simulator.attacks import paid_completion
from tests.enginehelpers import World, world
from tests.test_mutants import (
    PROG,
    USER,
    _count,
    _Interpose,
    _observed,
    _paid_event,
    _second_instance,
    both,
)

SEATS = [program_doc(PROG, class_rep_limit=5)]


def _checkpoints() -> _Interpose:
    """A store observer that only yields at every call: two requests interleave store call by
    store call, as two instances do."""
    return _Interpose("none", "none", anyio.sleep)


async def _released_and_paid(w: World, class_rep: bool = True) -> tuple[Any, dict[str, Any]]:
    """A purchase an earlier release cancelled without expiring its session, paid now."""
    result = await w.engine.create_purchase(USER, PROG, class_rep=class_rep)
    engine: Any = w.engine
    assert await engine._end_pending(result.purchase_id, "cancelled")
    return result, await _paid_event(w, result.session_id)


def _signed(w: World, event: dict[str, Any]) -> tuple[bytes, str]:
    payload = json.dumps(event).encode()
    return payload, w.fake.sign(payload)


# ---------------------------------------------------------------- create


def test_no_program_check_raises_for_a_withdrawn_program() -> None:
    async def scenario(factory: Any, bug: bool) -> None:
        async with world(factory) as w:
            expected = TypeError if bug else errors.NotFound
            with pytest.raises(expected):
                await w.engine.create_purchase(USER, "prog_withdrawn", class_rep=True)
            assert await w.purchases() == []

    both("no-program-check", scenario)


def test_takes_over_a_fresh_slot_starts_a_second_purchase() -> None:
    async def scenario(factory: Any, bug: bool) -> None:
        async with world(factory, programs=SEATS) as w:
            now = w.env.clock.now()  # another click claimed it and is writing its intent
            await w.env.store[SLOTS].insert_one(
                {"_id": f"{USER}:{PROG}", "purchase_id": "pur_other_1", "at": now}
            )
            if bug:
                result = await w.engine.create_purchase(USER, PROG, class_rep=True)
                slot = await w.env.store[SLOTS].find_one({"_id": f"{USER}:{PROG}"})
                assert slot is not None and slot["purchase_id"] == result.purchase_id
            else:
                with pytest.raises(errors.Busy):
                    await w.engine.create_purchase(USER, PROG, class_rep=True)
                assert await w.purchases() == [] and await _count(w) == 0

    both("takes-over-a-fresh-slot", scenario)


def test_sells_what_they_own_sells_the_program_twice() -> None:
    async def scenario(factory: Any, bug: bool) -> None:
        async with world(factory, programs=SEATS) as w:
            first = await w.engine.create_purchase(USER, PROG, class_rep=True)
            assert await w.deliver(await _paid_event(w, first.session_id)) == 200
            if bug:
                again = await w.engine.create_purchase(USER, PROG, class_rep=True)
                assert again.purchase_id != first.purchase_id
            else:
                with pytest.raises(errors.AlreadyPurchased):
                    await w.engine.create_purchase(USER, PROG, class_rep=True)
            assert len(await w.purchases()) == (2 if bug else 1)

    both("sells-what-they-own", scenario)


def test_new_purchase_on_retry_leaves_the_first_intent_pending() -> None:
    config = EngineConfig(stripe_timeout=2.0, stripe_retries=0)

    async def scenario(factory: Any, bug: bool) -> None:
        async with world(factory, programs=SEATS, config=config, max_network_retries=0) as w:
            w.fake.faults.latency_spike_probability = 1.0
            with pytest.raises(errors.UpstreamError) as first:
                await w.engine.create_purchase(USER, PROG, class_rep=True)
            assert not first.value.outcome_known
            w.fake.faults.latency_spike_probability = 0.0
            again = await w.engine.create_purchase(USER, PROG, class_rep=True)  # clicks again
            pending = await w.purchases(user_id=USER, status="pending")
            assert len(pending) == (2 if bug else 1)
            intent = min(p["_id"] for p in pending)
            assert (again.purchase_id == intent) != bug  # the reference resumed the intent

    both("new-purchase-on-retry", scenario)


def test_slot_guard_only_for_class_rep_lets_two_seatless_clicks_through() -> None:
    async def scenario(factory: Any, bug: bool) -> None:
        observed = _observed(factory, _checkpoints())
        async with world(observed, programs=SEATS) as w:
            other = await _second_instance(w, observed)
            busy: list[errors.Busy] = []

            async def click(engine: Any) -> None:
                try:
                    await engine.create_purchase(USER, PROG, class_rep=False)
                except errors.Busy as exc:
                    busy.append(exc)

            async with anyio.create_task_group() as tg:
                for engine in (w.engine, other):  # two instances, two lock tables
                    tg.start_soon(click, engine)
            pending = await w.purchases(user_id=USER, status="pending")
            assert len(pending) == (2 if bug else 1)
            assert len(busy) == (0 if bug else 1)

    both("slot-guard-only-for-class-rep", scenario)


def test_key_in_use_is_a_refusal_fails_the_purchase_stripe_is_making() -> None:
    async def scenario(factory: Any, bug: bool) -> None:
        async with world(factory, programs=SEATS) as w:
            w.fake.faults.processing_s = 6.0  # a loaded Stripe
            other = await _second_instance(w, factory)
            shown: list[Any] = []
            second: list[errors.UpstreamError] = []

            async def first_click() -> None:
                shown.append(await w.engine.create_purchase(USER, PROG, class_rep=True))

            async def second_click() -> None:
                await anyio.sleep(2.0)  # nothing happened yet: click again, other instance
                try:
                    await other.create_purchase(USER, PROG, class_rep=True)
                except errors.UpstreamError as exc:
                    second.append(exc)

            async with anyio.create_task_group() as tg:
                tg.start_soon(first_click)
                tg.start_soon(second_click)
            assert [e.outcome_known for e in second] == [bug]
            [purchase] = await w.purchases()
            assert purchase["status"] == ("failed" if bug else "pending")
            referenced = {p["stripe_session_id"] for p in await w.purchases()}
            assert (shown[0].session_id in referenced) != bug  # else it belongs to nobody

    both("key-in-use-is-a-refusal", scenario)


# ---------------------------------------------------------------- cancel


def test_cancels_anyones_purchase_lets_a_guessed_id_cancel_a_checkout() -> None:
    async def scenario(factory: Any, bug: bool) -> None:
        async with world(factory, programs=SEATS) as w:
            victim = await w.engine.create_purchase(USER, PROG, class_rep=True)
            if bug:
                await w.engine.cancel_purchase("attacker", victim.purchase_id)
            else:
                with pytest.raises(errors.NotFound):
                    await w.engine.cancel_purchase("attacker", victim.purchase_id)
            [purchase] = await w.purchases()
            assert purchase["status"] == ("cancelled" if bug else "pending")
            assert w.fake.sessions[victim.session_id].status == ("expired" if bug else "open")

    both("cancels-anyones-purchase", scenario)


def test_refuses_its_own_cancel_says_no_to_a_cancel_that_happened() -> None:
    async def scenario(factory: Any, bug: bool) -> None:
        class ExpiryDeliveredFirst(factory):  # type: ignore[misc,valid-type]
            async def _cancel_session(self, session_id: str) -> bool:
                closed: bool = await super()._cancel_session(session_id)
                [expired] = w.events("checkout.session.expired")
                assert await w.deliver(expired) == 200  # the purchase is expired now
                return closed

        async with world(ExpiryDeliveredFirst, programs=SEATS) as w:
            result = await w.engine.create_purchase(USER, PROG, class_rep=True)
            if bug:
                with pytest.raises(errors.NotCancellable):
                    await w.engine.cancel_purchase(USER, result.purchase_id)
            else:
                await w.engine.cancel_purchase(USER, result.purchase_id)
            [purchase] = await w.purchases()
            assert purchase["status"] == ("expired" if bug else "cancelled")
            assert w.fake.sessions[result.session_id].status == "expired"  # closed either way

    both("refuses-its-own-cancel", scenario)


# ---------------------------------------------------------------- late payments


def test_reseat_takes_a_seat_for_everyone_counts_a_seat_nobody_holds() -> None:
    async def scenario(factory: Any, bug: bool) -> None:
        async with world(factory, programs=SEATS) as w:
            _, event = await _released_and_paid(w, class_rep=False)
            assert await w.deliver(event) == 200
            [purchase] = await w.purchases()
            assert purchase["status"] == "completed" and not purchase["class_rep"]
            assert await _count(w) == (1 if bug else 0)

    both("reseat-takes-a-seat-for-everyone", scenario)


async def _two_notices_at_once(w: World, factory: Any, event: dict[str, Any]) -> None:
    """The same late payment's event to two instances at once (and interleaved)."""
    other = await _second_instance(w, factory)
    payload = w.fake.event_payload(event)
    async with anyio.create_task_group() as tg:
        for engine in (w.engine, other):
            tg.start_soon(engine.handle_webhook, payload, w.fake.sign(payload))


def test_reseat_ignores_its_transition_fulfils_the_late_payment_twice() -> None:
    async def scenario(factory: Any, bug: bool) -> None:
        observed = _observed(factory, _checkpoints())
        async with world(observed, programs=SEATS) as w:
            _, event = await _released_and_paid(w)
            await _two_notices_at_once(w, observed, event)
            assert len(w.fulfilment.grants) == (2 if bug else 1)
            [purchase] = await w.purchases()
            assert purchase["status"] == "completed"
            assert await _count(w) == (2 if bug else 1)  # the loser "won": it kept its seat too

    both("reseat-ignores-its-transition", scenario)


def test_refunds_before_deciding_refunds_a_late_payment_it_also_reseated() -> None:
    """Regression (the reference's own bug, found by late-payment-noticed-twice): with one seat
    left, one notice re-seated the payment and the other, finding the seat taken, refunded it."""

    async def scenario(factory: Any, bug: bool) -> None:
        observed = _observed(factory, _checkpoints())
        async with world(observed) as w:  # one seat: the released purchase gave it back
            _, event = await _released_and_paid(w)
            await _two_notices_at_once(w, observed, event)
            [purchase] = await w.purchases()
            refunded = bool(w.fake.refunds)
            completed = purchase["status"] == "completed"
            assert (completed and refunded) == bug
            assert completed or purchase["status"] == "refunded"
            assert len(w.fulfilment.grants) == int(completed)

    both("refunds-before-deciding", scenario)


def test_forgets_owed_refunds_keeps_a_payment_stripe_could_not_refund_at_first() -> None:
    async def scenario(factory: Any, bug: bool) -> None:
        async with world(factory, programs=SEATS, max_network_retries=0) as w:
            _, event = await _released_and_paid(w)
            w.env.store.sync[SLOTS].update_one(
                {"_id": f"{USER}:{PROG}"}, {"$set": {"purchase_id": "pur_newer"}}
            )  # the user bought again since: the late payment is refunded
            w.env.store.sync["purchases"].insert_one(
                {"_id": "pur_newer", "user_id": USER, "program_id": PROG, "status": "pending"}
            )
            w.fake.faults.outage = True
            assert await w.deliver(event) == 500  # refund decided, Stripe down
            w.fake.faults.outage = False
            assert await w.deliver(event) == 200  # Stripe's retry
            [purchase] = await w.purchases(_id=event["data"]["object"]["client_reference_id"])
            assert purchase["status"] == "refunded"
            assert len(w.fake.refunds) == (0 if bug else 1)

    both("forgets-owed-refunds", scenario)


def test_reclaims_without_the_slot_sells_the_program_again_later() -> None:
    async def scenario(factory: Any, bug: bool) -> None:
        async with world(factory, programs=SEATS) as w:
            old, event = await _released_and_paid(w)  # the old tab, paid later
            newer = await w.engine.create_purchase(USER, PROG, class_rep=True)
            await w.engine.cancel_purchase(USER, newer.purchase_id)
            assert await w.deliver(event) == 200  # the old tab's payment: re-seated
            [honoured] = await w.purchases(_id=old.purchase_id)
            assert honoured["status"] == "completed"
            if bug:  # the slot still names the cancelled purchase: Buy again sells again
                await w.engine.create_purchase(USER, PROG, class_rep=True)
            else:
                with pytest.raises(errors.AlreadyPurchased):
                    await w.engine.create_purchase(USER, PROG, class_rep=True)

    both("reclaims-without-the-slot", scenario)


def test_buy_again_ignores_a_reseat_charges_twice_when_the_old_tab_is_paid_meanwhile() -> None:
    """Buy again has read the old purchase as cancelled; the old tab's payment lands before Buy
    again takes the slot (found by explore --guided: slow store writes)."""

    async def scenario(factory: Any, bug: bool) -> None:
        w_box: list[World] = []

        async def old_tab_paid() -> None:
            assert await w_box[0].deliver(event) == 200

        interpose = _Interpose("purchase_slots", "update_one", old_tab_paid)
        async with world(_observed(factory, interpose), programs=SEATS) as w:
            w_box.append(w)
            old, event = await _released_and_paid(w)
            interpose.armed = True
            again = await w.engine.create_purchase(USER, PROG, class_rep=True)
            assert not interpose.armed  # the payment landed inside Buy again
            [before] = await w.purchases(_id=old.purchase_id)
            [new] = await w.purchases(_id=again.purchase_id)
            assert new["status"] == "pending"  # the customer is about to pay this one
            if bug:  # re-seated: the old payment is kept and the new checkout sells it again
                assert before["status"] == "completed" and not w.fake.refunds
            else:  # superseded: the old payment goes back
                assert before["status"] == "refunded" and before["superseded_by"] == new["_id"]
                assert [r.payment_intent for r in w.fake.refunds] == [
                    event["data"]["object"]["payment_intent"]
                ]

    both("buy-again-ignores-a-reseat", scenario)


# ---------------------------------------------------------------- events that must not be honoured


async def _open_purchase_event(w: World, kind: str, **obj: Any) -> dict[str, Any]:
    result = await w.engine.create_purchase(USER, PROG, class_rep=True)
    session = w.fake.sessions[result.session_id].to_json()
    event = paid_completion(session, "evt_adv_1", int(w.env.clock.now()))
    event["type"] = kind
    event["data"]["object"].update(obj)
    return event


@pytest.mark.parametrize(
    ("mutant", "kind", "obj", "ended"),
    [
        (
            "fails-on-the-events-word",
            "checkout.session.async_payment_failed",
            {"payment_status": "paid"},
            "failed",
        ),
        (
            "expires-on-the-events-word",
            "checkout.session.expired",
            {"status": "open", "payment_status": "unpaid", "payment_intent": None},
            "expired",
        ),
        (
            "fails-the-named-purchase",
            "checkout.session.async_payment_failed",
            {"id": "cs_adv_other_1", "payment_status": "unpaid"},
            "failed",
        ),
    ],
)
def test_an_expiry_or_failure_that_contradicts_itself_ends_nothing(
    mutant: str, kind: str, obj: dict[str, Any], ended: str
) -> None:
    async def scenario(factory: Any, bug: bool) -> None:
        async with world(factory, programs=SEATS) as w:
            event = await _open_purchase_event(w, kind, **obj)
            assert await w.engine.handle_webhook(*_signed(w, event)) == 200
            [purchase] = await w.purchases()
            assert purchase["status"] == (ended if bug else "pending")
            assert await _count(w) == (0 if bug else 1)

    both(mutant, scenario)


# ---------------------------------------------------------------- the seat ledger after a crash


async def _ended_with_its_seat(w: World, **move: Any) -> str:
    """A cancelled purchase whose seat release a crash cut short, left as `move` says; the
    clock then passes the grace. Returns the seat's ref."""
    result = await w.engine.create_purchase(USER, PROG, class_rep=True)
    [purchase] = await w.purchases()
    ref = purchase["seat_ref"]
    db = w.env.store
    await db.purchases.update_one({"_id": result.purchase_id}, {"$set": {"status": "cancelled"}})
    if move:
        key = move.pop("key")
        at = w.env.clock.now()
        await db.programs.update_one(
            {"_id": PROG}, {"$set": {f"{MOVES}.{key}": {"ref": ref, "d": -1, "at": at}}}
        )
        if move.get("released_by"):
            await db[SEAT_HOLDS].update_one(
                {"_id": ref}, {"$set": {"state": HOLD_RELEASED, "by": move["released_by"]}}
            )
        if move.get("counted"):
            await db.programs.update_one({"_id": PROG}, {"$inc": {"class_rep_count": -1}})
    await anyio.sleep(1000)
    return str(ref)


GRACE = EngineConfig(reconcile_grace=600.0)


def test_repair_keeps_ended_purchases_seats_leaks_a_seat_for_ever() -> None:
    async def scenario(factory: Any, bug: bool) -> None:
        async with world(factory, programs=SEATS, config=GRACE) as w:
            await _ended_with_its_seat(w)  # crashed before the release's first write
            await w.engine.reconcile()
            assert await _count(w) == (1 if bug else 0)

    both("repair-keeps-ended-purchases-seats", scenario)


def test_stale_releases_dropped_never_moves_the_counter_of_a_released_hold() -> None:
    async def scenario(factory: Any, bug: bool) -> None:
        async with world(factory, programs=SEATS, config=GRACE) as w:
            await _ended_with_its_seat(w, key="seatmove_m1", released_by="seatmove_m1")
            await w.engine.reconcile()  # the hold is released: only the counter is left
            assert await _count(w) == (1 if bug else 0)

    both("stale-releases-dropped", scenario)


def test_release_close_always_decrements_gives_a_seat_back_twice() -> None:
    async def scenario(factory: Any, bug: bool) -> None:
        async with world(factory, programs=SEATS, config=GRACE) as w:
            ref = await _ended_with_its_seat(
                w, key="seatmove_m1", released_by="seatmove_m2", counted=True
            )
            await w.engine.reconcile()  # m2 released the hold and moved the counter already
            assert await _count(w) == (-1 if bug else 0)
            hold = await w.env.store[SEAT_HOLDS].find_one({"_id": ref})
            assert hold is not None and hold["state"] == HOLD_RELEASED

    both("release-close-always-decrements", scenario)


def test_the_ledger_helpers_above_build_what_the_ledger_writes() -> None:
    """The hand-made ledger states use the ledger's own document shapes."""
    assert hold_doc("seat_1", program_id=PROG, purchase_id="pur_1", at=1.0)["state"] == HOLD_HELD


# ---------------------------------------------------------------- a 500 promises nothing


def test_takes_a_500_for_nothing_done_leaves_the_session_of_a_failed_create_to_nobody() -> None:
    """Stripe executes the create and answers 500 (kept under its key: the retry gets it too):
    the purchase fails and gives its seat back, but the session exists. When it expires naming
    the purchase, the reference records it there; the mutant leaves it to nobody. A session
    naming the purchase on other terms (not the create's `expires_at`) is not taken for it."""

    async def scenario(factory: Any, bug: bool) -> None:
        async with world(factory, programs=SEATS) as w:
            w.fake.faults.error_5xx_after_execution_probability = 1.0
            with pytest.raises(errors.UpstreamError):
                await w.engine.create_purchase(USER, PROG, class_rep=True)
            w.fake.faults.error_5xx_after_execution_probability = 0.0
            [failed] = await w.purchases()
            assert (failed["status"], failed["stripe_session_id"]) == ("failed", None)
            assert await _count(w) == 0
            [made] = list(w.fake.sessions)  # made all the same, once: the retry got the 500
            look_alike = w.fake.foreign_session(
                amount_total=failed["amount"],
                currency="usd",
                mode="payment",
                client_reference_id=failed["_id"],
                metadata={"purchase_id": failed["_id"]},
                expires_at=failed["session_expires_at"] - 60,
            )
            for session_id in (look_alike.id, made):
                assert w.fake.expire_now(session_id)
                [event] = [
                    e
                    for e in w.events("checkout.session.expired")
                    if e["data"]["object"]["id"] == session_id
                ]
                assert await w.deliver(event) == 200
            [after] = await w.purchases()
            assert after["status"] == "failed" and await _count(w) == 0
            assert after["stripe_session_id"] == (None if bug else made)

    both("takes-a-500-for-nothing-done", scenario)
