"""Regression tests for the five defects of issue 11: the reference engine's webhook, attacked.

1. a stale header with ` t=<now>,` prepended passed (two parsers of one header disagreed);
2. `=x` appended to `t` raised out of `handle_webhook`;
3. any paid session naming a purchase completed it (a 1-cent EUR session completed $50);
4. correctly signed odd shapes raised or wrote: missing ids, non-dict metadata, deep nesting,
   operator injection in an id, integers over 2^63;
5. a correctly signed completion for a purchase that does not exist: 500 for three days (unknown
   PaymentIntent) or a blind refund (known one). Now: acknowledged and dead-lettered.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from reference_impl.reference_engine import ReferenceEngine
from reference_impl.schema import WEBHOOK_DEAD_LETTERS, program_doc
from tests.enginehelpers import World, run_virtual, world

USER = "user_1"
PROG = "prog_1"
PROGRAMS = (program_doc(PROG, class_rep_limit=5),)


async def _snapshot(w: World) -> dict[str, list[dict[str, Any]]]:
    db = w.env.store.sync
    return {name: list(db[name].find({})) for name in db.list_collection_names()}


async def _paid_event(w: World, session_id: str) -> dict[str, Any]:
    before = len(w.fake.events)
    assert await w.fake.customer_pay(session_id, flow="card")
    return next(e for e in w.fake.events[before:] if e["type"] == "checkout.session.completed")


def _signed(w: World, event: dict[str, Any], **sign: Any) -> tuple[bytes, str]:
    payload = json.dumps(event).encode()
    return payload, w.fake.sign(payload, **sign)


async def _dead_letters(w: World) -> list[dict[str, Any]]:
    return await w.env.store[WEBHOOK_DEAD_LETTERS].find({}).to_list()


def test_defect_1_prepended_fresh_t_does_not_revive_a_stale_signature() -> None:
    async def main() -> None:
        async with world(ReferenceEngine, programs=PROGRAMS) as w:
            result = await w.engine.create_purchase(USER, PROG, class_rep=True)
            event = await _paid_event(w, result.session_id)
            payload = w.fake.event_payload(event)
            now = int(w.env.clock.now())
            day_old = w.fake.sign(payload, timestamp=now - 86400)
            before = await _snapshot(w)
            for trick in (f" t={now},{day_old}", f"t={now} ,{day_old}", f"{day_old}, t={now}"):
                assert await w.engine.handle_webhook(payload, trick) == 400, trick
            assert await _snapshot(w) == before and not w.fulfilment.grants
            # the genuine, fresh delivery still completes it
            assert await w.deliver(event) == 200
            assert [p["status"] for p in await w.purchases()] == ["completed"]

    run_virtual(main)


def test_defect_2_odd_t_values_never_raise() -> None:
    async def main() -> None:
        async with world(ReferenceEngine, programs=PROGRAMS) as w:
            result = await w.engine.create_purchase(USER, PROG, class_rep=True)
            event = await _paid_event(w, result.session_id)
            payload = w.fake.event_payload(event)
            now = int(w.env.clock.now())
            t, v1 = w.fake.sign(payload).split(",")
            stale_t, stale_v1 = w.fake.sign(payload, timestamp=now - 3600).split(",")
            before = await _snapshot(w)
            for header in (
                f"{stale_t}=x,{stale_v1}",  # the SDK reads t={now-3600}: stale
                f"t=x{now},{v1}",
                f"t={'9' * 5000},{v1}",  # int() refuses 5000 digits
                f"t=,{v1}",
                f"t={now}.5,{v1}",
            ):
                assert await w.engine.handle_webhook(payload, header) == 400, header
            assert await _snapshot(w) == before
            # the SDK itself accepts `t=<now>=x` (it splits on the first two `=`): so do we
            assert await w.engine.handle_webhook(payload, f"{t}=x,{v1}") == 200

    run_virtual(main)


def test_defect_3_a_foreign_underpaid_session_never_completes_a_purchase() -> None:
    async def main() -> None:
        async with world(ReferenceEngine, programs=PROGRAMS) as w:
            result = await w.engine.create_purchase(USER, PROG, class_rep=True)
            for n, (amount, currency, mode) in enumerate(
                (
                    (1, "eur", "payment"),
                    (5000, "eur", "payment"),
                    (5000, "usd", "subscription"),
                    (1, "usd", "payment"),
                    (5000, "usd", "payment"),
                )  # fmt: skip
            ):
                foreign = w.fake.foreign_session(
                    amount_total=amount,
                    currency=currency,
                    mode=mode,
                    client_reference_id=result.purchase_id if n % 2 == 0 else None,
                    metadata={"purchase_id": result.purchase_id},
                    expires_at=int(w.env.clock.now()) + 3600,
                )
                assert await w.deliver(await _paid_event(w, foreign.id)) == 200
                [p] = await w.purchases()
                assert p["status"] == "pending", (amount, currency, mode)
                assert p["stripe_session_id"] == result.session_id
            letters = await _dead_letters(w)
            assert len(letters) == 5 and not w.fake.refunds and not w.fulfilment.grants
            assert {d["purchase_id"] for d in letters} == {result.purchase_id}
            # the engine's own session is still open and completes the purchase
            assert await w.deliver(await _paid_event(w, result.session_id)) == 200
            [p] = await w.purchases()
            assert p["status"] == "completed" and p["stripe_session_id"] == result.session_id
            assert len(w.fulfilment.grants) == 1

    run_virtual(main)


def test_defect_3_a_signed_event_claiming_the_own_session_but_underpaid_is_refused() -> None:
    """Identity alone is not enough: the session's amount, currency and mode are checked too."""

    async def main() -> None:
        async with world(ReferenceEngine, programs=PROGRAMS) as w:
            result = await w.engine.create_purchase(USER, PROG, class_rep=True)
            event = await _paid_event(w, result.session_id)
            for field, value in (("amount_total", 1), ("currency", "eur"), ("mode", "setup")):
                forged = copy.deepcopy(event)
                forged["data"]["object"][field] = value
                assert await w.engine.handle_webhook(*_signed(w, forged)) == 200
                assert [p["status"] for p in await w.purchases()] == ["pending"], field
            assert [d["reason"][:6] for d in await _dead_letters(w)] == ["amount"]
            assert await w.deliver(event) == 200  # the real one, after the dead letter
            assert [p["status"] for p in await w.purchases()] == ["completed"]

    run_virtual(main)


def test_defect_4_odd_shapes_with_a_valid_signature_get_400_and_write_nothing() -> None:
    async def main() -> None:
        async with world(ReferenceEngine, programs=PROGRAMS) as w:
            result = await w.engine.create_purchase(USER, PROG, class_rep=True)
            other = await w.engine.create_purchase("user_2", PROG, class_rep=True)
            event = await _paid_event(w, result.session_id)

            def forged(**changes: Any) -> dict[str, Any]:
                out = copy.deepcopy(event)
                for key, value in changes.items():
                    if value is KeyError:
                        del out["data"]["object"][key]
                    else:
                        out["data"]["object"][key] = value
                return out

            cases = [
                forged(id=KeyError),
                forged(id=12),
                forged(id={"$gt": ""}),
                forged(metadata=["purchase_id", other.purchase_id]),
                forged(client_reference_id={"$gt": ""}),
                forged(client_reference_id={"$ne": None}, metadata={"purchase_id": {"$gt": ""}}),
                forged(payment_intent={"$exists": True}),
                forged(amount_total=2**64),
                forged(amount_total=-5),
                forged(amount_total=True),
                forged(currency=["usd"]),
            ]
            before = await _snapshot(w)
            for case in cases:
                payload, header = _signed(w, case)
                assert await w.engine.handle_webhook(payload, header) == 400
            for number in (2**70, 2**53 + 1):  # integers past 2^53, in a field the engine reads
                text = json.dumps(forged()).replace('"amount_total": 5000', f'"amount_total": {number}')
                assert await w.engine.handle_webhook(text.encode(), w.fake.sign(text.encode())) == 400
            for number in ("1e400", "-1e999", str(2**60)):  # or anywhere: 1e400 parses as inf
                text = json.dumps(forged(nested="X")).replace('"X"', number)
                assert await w.engine.handle_webhook(text.encode(), w.fake.sign(text.encode())) == 400
            for depth in (40, 5000):  # past the depth bound; past the JSON parser's recursion
                text = json.dumps(forged(nested="X"))
                deep = text.replace('"X"', '{"a": ' * depth + "1" + "}" * depth).encode()
                assert await w.engine.handle_webhook(deep, w.fake.sign(deep)) == 400
            assert await _snapshot(w) == before and not w.fulfilment.grants
            # a missing payment_intent on a paid session: never honoured, kept for a human
            assert (
                await w.engine.handle_webhook(*_signed(w, forged(payment_intent=KeyError))) == 200
            )
            assert [p["status"] for p in await w.purchases()] == ["pending", "pending"]
            assert len(await _dead_letters(w)) == 1
            assert await w.deliver(event) == 200
            statuses = {p["_id"]: p["status"] for p in await w.purchases()}
            assert statuses == {result.purchase_id: "completed", other.purchase_id: "pending"}

    run_virtual(main)


def test_defect_5_completion_for_a_purchase_that_does_not_exist_is_acknowledged_and_kept() -> None:
    """Policy: acknowledged (200, so Stripe stops retrying) and dead-lettered; never refunded
    blindly, since no purchase of this engine issued that session."""

    async def main() -> None:
        async with world(ReferenceEngine, programs=PROGRAMS) as w:
            result = await w.engine.create_purchase(USER, PROG, class_rep=True)
            event = await _paid_event(w, result.session_id)
            ghost = "pur_does_not_exist"
            unknown_pi = copy.deepcopy(event)
            unknown_pi["data"]["object"].update(
                id="cs_ghost_1", client_reference_id=ghost, payment_intent="pi_unknown_1"
            )
            known_pi = copy.deepcopy(event)
            known_pi["data"]["object"].update(id="cs_ghost_2", client_reference_id=ghost)
            known_pi["data"]["object"]["metadata"]["purchase_id"] = ghost
            for forged in (unknown_pi, known_pi):
                for _ in range(2):  # a redelivery answers the same, keeps one record
                    assert await w.engine.handle_webhook(*_signed(w, forged)) == 200
            letters = await _dead_letters(w)
            assert sorted(d["session_id"] for d in letters) == ["cs_ghost_1", "cs_ghost_2"]
            assert {d["purchase_id"] for d in letters} == {ghost}
            assert not w.fake.refunds and not w.fulfilment.grants
            assert [p["status"] for p in await w.purchases()] == ["pending"]

    run_virtual(main)


def test_a_purchase_whose_create_answer_was_lost_learns_its_own_session_by_replaying_it() -> None:
    """No stored session id (the create's answer was lost): the idempotent create is replayed
    and Stripe's answer says which session is the purchase's own; a foreign one naming it is
    kept for a human, the own one completes it."""

    async def main() -> None:
        async with world(ReferenceEngine, programs=PROGRAMS) as w:
            result = await w.engine.create_purchase(USER, PROG, class_rep=True)
            forget = {"$set": {"stripe_session_id": None, "checkout_url": None}}
            await w.env.store.purchases.update_one({"_id": result.purchase_id}, forget)
            foreign = w.fake.foreign_session(
                amount_total=5000,
                currency="usd",
                mode="payment",
                client_reference_id=result.purchase_id,
                metadata={},
                expires_at=int(w.env.clock.now()) + 3600,
            )
            assert await w.deliver(await _paid_event(w, foreign.id)) == 200
            [p] = await w.purchases()
            assert p["status"] == "pending" and p["stripe_session_id"] == result.session_id
            assert [d["session_id"] for d in await _dead_letters(w)] == [foreign.id]
            assert len(w.fake.sessions) == 2  # the replay created nothing new
            assert await w.deliver(await _paid_event(w, result.session_id)) == 200
            assert [p["status"] for p in await w.purchases()] == ["completed"]
            assert [g.session_id for g in w.fulfilment.grants] == [result.session_id]

    run_virtual(main)
