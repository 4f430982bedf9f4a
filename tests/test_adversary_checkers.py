"""The invariants and checker rules issue 11 added, on hand-made histories: each rule has a case
it must catch and a case it must pass."""

from __future__ import annotations

from typing import Any

from simulator.checkers import HELD, INVARIANTS, VIOLATED, FinalFacts
from tests.test_checkers import check, history

FOREIGN = {
    "type": "adversary.foreign_session",
    "session_id": "cs_f",
    "purchase_id": "pur_1",
    "variant": "underpaid",
    "via": "metadata",
    "amount": 1,
    "currency": "usd",
    "mode": "payment",
}
PROGRAMS = [{"_id": "p", "price_cents": 5000}]


def _facts(
    purchases: list[dict[str, Any]],
    sessions: list[dict[str, Any]],
    refunds: list[dict[str, Any]] = (),  # type: ignore[assignment]
    **state: Any,
) -> FinalFacts:
    final = {"programs": PROGRAMS, "purchases": purchases, **state}
    return FinalFacts(final, {"sessions": sessions, "refunds": list(refunds)}, True)


def _session(sid: str, **fields: Any) -> dict[str, Any]:
    base = {"id": sid, "payment_status": "paid", "amount_total": 5000, "mode": "payment"}
    return {**base, "payment_intent": f"pi_{sid}", "client_reference_id": "pur_1", **fields}


def _completed(session_id: str) -> dict[str, Any]:
    return {
        "_id": "pur_1",
        "status": "completed",
        "program_id": "p",
        "stripe_session_id": session_id,
    }


def test_the_new_invariants_are_registered() -> None:
    assert {"payment_matches_purchase", "no_engine_exception"} <= set(INVARIANTS)


def test_payment_matches_purchase_catches_a_completion_by_a_foreign_session() -> None:
    grant = {"type": "fulfilment", "purchase_id": "pur_1", "session_id": "cs_f"}
    facts = _facts([_completed("cs_f")], [_session("cs_f", amount_total=1)])
    status, found = check("payment_matches_purchase", history(FOREIGN, grant), facts)
    assert status == VIOLATED and len(found) == 2
    assert "created outside the engine" in found[0].detail
    own = _facts([_completed("cs_own")], [_session("cs_own"), _session("cs_f", amount_total=1)])
    grant_own = {**grant, "session_id": "cs_own"}
    assert check("payment_matches_purchase", history(FOREIGN, grant_own), own) == (HELD, [])


def test_payment_matches_purchase_catches_unpaid_underpaid_and_other_mode_sessions() -> None:
    for bad in ({"payment_status": "unpaid"}, {"amount_total": 4999}, {"mode": "subscription"}):
        facts = _facts([_completed("cs_1")], [_session("cs_1", **bad)])
        status, found = check("payment_matches_purchase", [], facts)
        assert status == VIOLATED and found[0].purchase_id == "pur_1", bad
    unknown = _facts([_completed("cs_nowhere")], [])
    assert check("payment_matches_purchase", [], unknown)[0] == VIOLATED


def test_payment_matches_purchase_catches_a_write_by_an_event_that_must_not_be_honoured() -> None:
    write = {"type": "store.write", "coll": "purchases", "op": "update_one", "id": "pur_1"}
    attacked = history({**write, "req": "adv-attack-3", "modified": 1})
    assert check("payment_matches_purchase", attacked)[0] == VIOLATED
    harmless = history(
        {**write, "req": "adv-attack-3", "modified": 0},
        {**write, "coll": "webhook_dead_letters", "op": "insert_one", "req": "adv-attack-4"},
        {**write, "req": "wh7", "modified": 1},
    )
    assert check("payment_matches_purchase", harmless) == (HELD, [])


def test_no_engine_exception_catches_any_recorded_escape() -> None:
    escaped = {
        "type": "engine.exception",
        "instance": "i0",
        "request": "wh3",
        "error": "KeyError",
        "message": "'id'",
        "traceback": ["reference_engine.py:12 in _dispatch"],
    }
    status, found = check("no_engine_exception", history(escaped))
    assert status == VIOLATED and "KeyError" in found[0].detail and "wh3" in found[0].detail
    assert check("no_engine_exception", history({"type": "op.ok"})) == (HELD, [])


def test_no_lost_payment_wants_a_foreign_payment_refunded_or_kept_for_a_human() -> None:
    paid = {
        "type": "stripe.session",
        "id": "cs_f",
        "payment_status": "paid",
        "payment_intent": "pi_f",
    }
    sessions = [_session("cs_f", amount_total=1)]
    status, found = check("no_lost_payment", history(FOREIGN, paid), _facts([], sessions))
    assert status == VIOLATED and "outside the engine" in found[0].detail
    kept = _facts([], sessions, webhook_dead_letters=[{"_id": "cs_f", "session_id": "cs_f"}])
    assert check("no_lost_payment", history(FOREIGN, paid), kept) == (HELD, [])
    refunded = _facts([], sessions, refunds=[{"payment_intent": "pi_f"}])
    assert check("no_lost_payment", history(FOREIGN, paid), refunded) == (HELD, [])
    # its only event given up, even under the nemesis: still judged, for the engine can list
    # the events Stripe never delivered
    event = {"type": "stripe.event", "id": "evt_1", "session_id": "cs_f"}
    given_up = {"type": "webhook.given_up", "event_id": "evt_1"}
    on = {"type": "fault.start", "kind": "webhook_failures", "target": "i0"}
    off = {"type": "fault.end", "kind": "webhook_failures", "target": "i0"}
    unheard = history(FOREIGN, paid, event, on, given_up, off)
    assert check("no_lost_payment", unheard, _facts([], sessions))[0] == VIOLATED
    assert check("no_lost_payment", unheard, kept) == (HELD, [])
    # a session the engine issued may not end as a dead letter: that is a lost payment
    own = {**paid, "id": "cs_own", "payment_intent": "pi_own"}
    letters = [{"_id": "cs_own", "session_id": "cs_own"}]
    pending = {"_id": "pur_1", "status": "pending", "stripe_session_id": "cs_own"}
    facts = _facts([pending], [_session("cs_own")], webhook_dead_letters=letters)
    assert check("no_lost_payment", history(own), facts)[0] == VIOLATED


def test_no_orphan_session_does_not_ask_a_purchase_of_a_foreign_session() -> None:
    created = {"type": "stripe.session", "id": "cs_f", "action": "created"}
    assert check("no_orphan_session", history(FOREIGN, created), _facts([], [])) == (HELD, [])
    assert check("no_orphan_session", history(created), _facts([], []))[0] == VIOLATED


def test_webhooks_acknowledged_wants_a_2xx_for_an_event_that_can_never_succeed() -> None:
    attack = {"type": "adversary.attack", "family": "unknown_objects", "variant": "ghost"}
    for status in (500, 400, "error: KeyError"):
        entry = {**attack, "expect": "ack", "status": status}
        assert check("webhooks_acknowledged", history(entry))[0] == VIOLATED, status
    fine = history(
        {**attack, "expect": "ack", "status": 200},
        {**attack, "expect": "not_honoured", "status": 500},
        # every post met a crashed instance (the nemesis's, not the engine's): nothing judged
        {**attack, "expect": "ack", "status": "unreachable"},
    )
    assert check("webhooks_acknowledged", fine) == (HELD, [])


def test_signature_enforced_covers_the_adversary_s_refused_attacks() -> None:
    probe = {
        "type": "probe.forged",
        "variant": "adversary:header_tricks:fresh_t_prepended",
        "event_id": "e",
    }
    assert check("signature_enforced", history({**probe, "status": 200}))[0] == VIOLATED
    wrote = {"type": "fulfilment", "req": "probe-adv-1", "purchase_id": "pur_1"}
    status, found = check("signature_enforced", history({**probe, "status": 400}, wrote))
    assert status == VIOLATED and "fulfilment of pur_1" in found[0].detail
    assert check("signature_enforced", history({**probe, "status": 400})) == (HELD, [])
