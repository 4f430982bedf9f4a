"""Every checker on hand-made histories: one case it must catch and one it must pass."""

from __future__ import annotations

from typing import Any

import pytest

from simulator.checkers import HELD, UNKNOWN, VIOLATED, FinalFacts, new_checkers
from simulator.checkers.evidence import Evidence
from simulator.judge import judge
from simulator.scenario import FaultSpec, Scenario


def history(*entries: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"seq": i, "t": float(i), **e} for i, e in enumerate(entries)]


def check(
    name: str, entries: list[dict[str, Any]], facts: FinalFacts | None = None
) -> tuple[str, list[Any]]:
    checker = next(c for c in new_checkers() if c.name == name)
    for entry in entries:
        if entry["type"] in checker.types:
            checker.observe(entry)
    result = checker.finish(
        facts or FinalFacts({"programs": [], "purchases": []}, {"sessions": []}, True)
    )
    return result.status, result.violations


def write(
    pid: str,
    status: str,
    user: str = "u1",
    program: str = "p",
    class_rep: bool = True,
    **extra: Any,
) -> dict[str, Any]:
    doc = {
        "status": status,
        "user_id": user,
        "program_id": program,
        "class_rep": class_rep,
        **extra,
    }
    return {"type": "store.write", "coll": "purchases", "op": "update_one", "id": pid, "doc": doc}


def counter(value: int, program: str = "p") -> dict[str, Any]:
    return {
        "type": "store.write",
        "coll": "programs",
        "op": "update_one",
        "id": program,
        "doc": {"class_rep_count": value},
    }


START = {"type": "run.start", "programs": [{"id": "p", "class_rep_limit": 2}]}


def grant(pid: str, sid: str, req: str | None = None) -> dict[str, Any]:
    return {"type": "fulfilment", "purchase_id": pid, "session_id": sid, "req": req}


def paid(sid: str, pi: str = "pi_1") -> dict[str, Any]:
    return {
        "type": "stripe.session",
        "id": sid,
        "action": "paid",
        "status": "complete",
        "payment_status": "paid",
        "payment_intent": pi,
    }


def created(sid: str) -> dict[str, Any]:
    return {
        "type": "stripe.session",
        "id": sid,
        "action": "created",
        "status": "open",
        "payment_status": "unpaid",
    }


# ---- no_double_completion


def test_double_completion_caught_per_purchase_per_session_and_per_receipt() -> None:
    status, found = check(
        "no_double_completion",
        history(
            grant("a", "cs1"),
            grant("a", "cs1"),
            grant("b", "cs2"),
            grant("c", "cs2"),
            {"type": "email.sent", "purchase_id": "d"},
            {"type": "email.sent", "purchase_id": "d"},
        ),
    )
    assert status == VIOLATED
    assert {v.purchase_id or v.session_id for v in found} == {"a", "cs2", "d"}
    assert found[0].evidence == (0, 1)


def test_single_completions_pass() -> None:
    status, _ = check(
        "no_double_completion",
        history(grant("a", "cs1"), grant("b", "cs2"), {"type": "email.sent", "purchase_id": "a"}),
    )
    assert status == HELD


# ---- no_limit_bypass


def test_limit_bypass_caught_at_the_instant_it_happens() -> None:
    status, found = check(
        "no_limit_bypass",
        history(
            START,
            write("a", "pending", "u1"),
            write("b", "pending", "u2"),
            write("c", "pending", "u3"),
            write("c", "cancelled", "u3"),
        ),
    )
    assert status == VIOLATED and found[0].at == 3.0 and found[0].purchase_id == "c"


def test_limit_respected_passes_even_with_churn() -> None:
    status, _ = check(
        "no_limit_bypass",
        history(
            START,
            write("a", "pending", "u1"),
            write("b", "pending", "u2"),
            write("a", "expired", "u1"),
            write("c", "pending", "u3"),
            write("x", "pending", "u4", class_rep=False),
        ),
    )
    assert status == HELD


def test_limit_bypass_caught_in_the_final_state() -> None:
    facts = FinalFacts(
        {
            "programs": [{"_id": "p", "class_rep_limit": 1, "class_rep_count": 1}],
            "purchases": [
                {"_id": x, "program_id": "p", "class_rep": True, "status": "completed"}
                for x in "ab"
            ],
        },
        {"sessions": []},
        True,
    )
    status, _ = check("no_limit_bypass", history(START), facts)
    assert status == VIOLATED


# ---- counter_consistent


def _facts(
    count: int,
    purchases: list[dict[str, Any]],
    sessions: list[dict[str, Any]],
    quiescent: bool = True,
) -> FinalFacts:
    return FinalFacts(
        {
            "programs": [{"_id": "p", "class_rep_limit": 3, "class_rep_count": count}],
            "purchases": purchases,
        },
        {"sessions": sessions},
        quiescent,
    )


def test_counter_leak_on_an_abandoned_pending_purchase_is_caught() -> None:
    facts = _facts(
        1,
        [
            {
                "_id": "a",
                "program_id": "p",
                "class_rep": True,
                "status": "pending",
                "stripe_session_id": "cs1",
            }
        ],
        [{"id": "cs1", "status": "expired"}],
    )
    status, found = check("counter_consistent", [], facts)
    assert status == VIOLATED and "leak" in found[0].detail


def test_counter_matching_completed_seats_passes_and_unknown_without_quiescence() -> None:
    purchases = [
        {
            "_id": "a",
            "program_id": "p",
            "class_rep": True,
            "status": "completed",
            "stripe_session_id": "cs1",
        }
    ]
    assert (
        check(
            "counter_consistent", [], _facts(1, purchases, [{"id": "cs1", "status": "complete"}])
        )[0]
        == HELD
    )
    assert check("counter_consistent", [], _facts(0, purchases, [], quiescent=False))[0] == UNKNOWN


def test_negative_counter_is_caught_even_without_quiescence() -> None:
    status, _ = check(
        "counter_consistent", history(counter(0), counter(-1)), _facts(0, [], [], quiescent=False)
    )
    assert status == VIOLATED


# ---- no_lost_payment


def test_paid_session_without_completion_or_refund_is_a_lost_payment() -> None:
    facts = _facts(
        0,
        [{"_id": "a", "program_id": "p", "status": "cancelled", "stripe_session_id": "cs1"}],
        [{"id": "cs1"}],
    )
    status, found = check("no_lost_payment", history(paid("cs1")), facts)
    assert status == VIOLATED and found[0].session_id == "cs1"
    # an unfinished run: the completion or the refund may still be on its way
    facts.quiescent = False
    assert check("no_lost_payment", history(paid("cs1")), facts) == (UNKNOWN, [])


def test_completed_or_refunded_payments_are_not_lost() -> None:
    facts = FinalFacts(
        {
            "programs": [],
            "purchases": [
                {"_id": "a", "status": "completed", "stripe_session_id": "cs1"},
                {"_id": "b", "status": "refunded", "stripe_session_id": "cs2"},
            ],
        },
        {"sessions": [], "refunds": [{"payment_intent": "pi_2"}]},
        True,
    )
    assert (
        check("no_lost_payment", history(paid("cs1", "pi_1"), paid("cs2", "pi_2")), facts)[0]
        == HELD
    )


# ---- no_unpaid_fulfilment


def test_fulfilment_before_payment_is_caught() -> None:
    status, _ = check(
        "no_unpaid_fulfilment", history(created("cs1"), grant("a", "cs1"), paid("cs1"))
    )
    assert status == VIOLATED


def test_fulfilment_after_payment_passes() -> None:
    assert (
        check("no_unpaid_fulfilment", history(created("cs1"), paid("cs1"), grant("a", "cs1")))[0]
        == HELD
    )


# ---- no_orphan_session


def test_orphan_and_shared_sessions_are_caught() -> None:
    facts = FinalFacts(
        {
            "programs": [],
            "purchases": [
                {"_id": "a", "stripe_session_id": "cs2"},
                {"_id": "b", "stripe_session_id": "cs2"},
                {"_id": "c", "stripe_session_id": "cs3"},
            ],
        },
        {"sessions": []},
        True,
    )
    status, found = check(
        "no_orphan_session", history(created("cs1"), created("cs2"), created("cs3")), facts
    )
    assert status == VIOLATED and {v.session_id for v in found} == {"cs1", "cs2"}
    # unfinished: the unreferenced cs1 may still be settled by the sweep; the shared cs2 not
    facts.quiescent = False
    status, found = check(
        "no_orphan_session", history(created("cs1"), created("cs2"), created("cs3")), facts
    )
    assert status == VIOLATED and {v.session_id for v in found} == {"cs2"}


def test_one_purchase_per_session_passes() -> None:
    facts = FinalFacts(
        {"programs": [], "purchases": [{"_id": "a", "stripe_session_id": "cs1"}]},
        {"sessions": []},
        True,
    )
    assert check("no_orphan_session", history(created("cs1")), facts)[0] == HELD


# ---- single_pending_per_user


def test_two_pending_purchases_of_one_user_are_caught() -> None:
    status, _ = check(
        "single_pending_per_user", history(write("a", "pending"), write("b", "pending"))
    )
    assert status == VIOLATED


def test_sequential_pending_purchases_pass() -> None:
    entries = history(
        write("a", "pending"),
        write("a", "expired"),
        write("b", "pending"),
        write("c", "pending", "u2"),
    )
    assert check("single_pending_per_user", entries)[0] == HELD


# ---- webhooks_acknowledged


def test_an_event_stripe_gave_up_on_is_caught() -> None:
    entries = history(
        {"type": "stripe.event", "id": "evt_1"},
        {"type": "webhook.response", "event_id": "evt_1", "status": 500},
        {
            "type": "webhook.given_up",
            "event_id": "evt_1",
            "event_type": "checkout.session.completed",
            "attempts": 9,
        },
    )
    status, found = check("webhooks_acknowledged", entries)
    assert status == VIOLATED and found[0].evidence == (2, 1)


def test_acknowledged_events_pass_and_outstanding_ones_are_unknown() -> None:
    acked = history(
        {"type": "stripe.event", "id": "evt_1"},
        {"type": "webhook.acknowledged", "event_id": "evt_1"},
    )
    assert check("webhooks_acknowledged", acked)[0] == HELD
    outstanding = history({"type": "stripe.event", "id": "evt_1"})
    assert check("webhooks_acknowledged", outstanding)[0] == UNKNOWN


def _given_up_around_faults(*between: dict[str, Any]) -> list[dict[str, Any]]:
    """A 500-forever event: faults switch on, then `between`, then Stripe gives up."""
    return history(
        {"type": "fault.start", "kind": "webhook_failures", "target": "i0"},
        {"type": "stripe.event", "id": "evt_1"},
        {"type": "fault.webhook_failure"},
        {"type": "webhook.response", "event_id": "evt_1", "status": 500},
        *between,
        {"type": "webhook.response", "event_id": "evt_1", "status": 500},
        {"type": "webhook.given_up", "event_id": "evt_1", "event_type": "x", "attempts": 15},
    )


def test_an_event_given_up_while_faults_are_still_on_is_not_judged() -> None:
    # explore --guided, seed 35686: webhook_failures at p=1 outlasted the event's three days;
    # every attempt got the fault's 500 before the engine saw it
    assert check("webhooks_acknowledged", _given_up_around_faults()) == (HELD, [])
    # another fault of the kind still on when the first ends: still under the nemesis
    overlapping = _given_up_around_faults(
        {"type": "fault.start", "kind": "webhook_failures", "target": "i0"},
        {"type": "fault.end", "kind": "webhook_failures", "target": "i0"},
    )
    assert check("webhooks_acknowledged", overlapping) == (HELD, [])
    # another fault's end does not end this one
    other = _given_up_around_faults({"type": "fault.end", "kind": "pause", "target": "i0"})
    assert check("webhooks_acknowledged", other) == (HELD, [])


def test_an_event_given_up_after_the_faults_stopped_is_caught() -> None:
    ended = _given_up_around_faults(
        {"type": "fault.end", "kind": "webhook_failures", "target": "i0"}
    )
    assert check("webhooks_acknowledged", ended)[0] == VIOLATED
    # the liveness phase: every fault is off, whatever fault.end entries say
    liveness = _given_up_around_faults({"type": "liveness.start"})
    assert check("webhooks_acknowledged", liveness)[0] == VIOLATED


# ---- signature_enforced


def test_a_forged_webhook_that_is_accepted_or_writes_is_caught() -> None:
    entries = history(
        {"type": "probe.forged", "variant": "wrong_secret", "event_id": "e", "status": 200},
        {
            "type": "store.write",
            "coll": "purchases",
            "op": "update_one",
            "id": "a",
            "req": "probe1",
        },
    )
    status, found = check("signature_enforced", entries)
    assert status == VIOLATED and len(found) == 2


def test_rejected_forgeries_pass_and_no_probe_is_unknown() -> None:
    entries = history(
        {"type": "probe.forged", "variant": "stale", "event_id": "e", "status": 400},
        {"type": "store.write", "coll": "purchases", "op": "update_one", "id": "a", "req": "wh3"},
    )
    assert check("signature_enforced", entries)[0] == HELD
    assert check("signature_enforced", [])[0] == UNKNOWN


# ---- vacuity and the verdict


def test_a_fault_that_never_took_effect_makes_the_run_vacuous() -> None:
    scenario = Scenario(faults=(FaultSpec(kind="crash", probability=0.5),))
    run = history(
        {"type": "fault.start", "kind": "crash"},
        {"type": "probe.forged", "variant": "stale", "event_id": "e", "status": 400},
        {"type": "liveness.end", "quiescent": True},
    )
    judged = judge(run, {"programs": [], "purchases": []}, {"sessions": []}, scenario)
    assert judged.verdict == "fail" and judged.vacuous
    crashed = history({"type": "instance.crash"}, *run)
    judged = judge(crashed, {"programs": [], "purchases": []}, {"sessions": []}, scenario)
    assert judged.verdict == "pass" and not judged.vacuous


@pytest.mark.parametrize(
    ("entry", "evidence"),
    [
        ({"type": "lock.granted", "wait_s": 0.5}, "lock_wait"),
        ({"type": "webhook.attempt", "attempt": 2}, "duplicate_delivery"),
        ({"type": "webhook.attempt", "attempt": 1, "overlapping": True}, "concurrent_delivery"),
        ({"type": "op.fail", "error": "limit_reached"}, "limit_reached"),
        ({"type": "op.info"}, "unknown_outcome"),
    ],
)
def test_evidence_kinds(entry: dict[str, Any], evidence: str) -> None:
    seen = Evidence()
    assert seen.missing([evidence], []) == [evidence]
    seen.observe(entry)
    assert seen.missing([evidence], []) == []


def test_lock_waits_are_recomputed_from_the_history_and_slos_judged() -> None:
    scenario = Scenario()
    run = history(
        *({"type": "lock.granted", "key": "purchase:create:u:p", "wait_s": 0.2} for _ in range(10)),
        {"type": "probe.forged", "variant": "stale", "event_id": "e", "status": 400},
        {"type": "liveness.end", "quiescent": True},
    )
    judged = judge(run, {"programs": [], "purchases": []}, {"sessions": []}, scenario)
    assert judged.lock_wait_ms["purchase:create"]["count"] == 10
    assert judged.lock_wait_ms["purchase:create"]["p50"] == pytest.approx(200, rel=0.01)
    assert judged.verdict == "pass" and not judged.thresholds["met"] and judged.exit_code == 3
