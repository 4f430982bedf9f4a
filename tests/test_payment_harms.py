"""The invariants for every way a paying customer can be wronged: charged twice, refunded
without cause, left waiting forever. Each on hand-made histories (a case it must catch, one it
must pass) and against its mutant in the CI scenario whose hazard it is."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from simulator.checkers import HELD, UNKNOWN, VIOLATED, FinalFacts
from simulator.runner import run_scenario
from simulator.scenario_file import load_scenario
from simulator.services import as_id
from tests.test_checkers import check, created, history, paid, write

CI = Path("scenarios/ci")


def facts(
    purchases: list[dict[str, Any]],
    sessions: list[dict[str, Any]] = (),  # type: ignore[assignment]
    refunds: list[dict[str, Any]] = (),  # type: ignore[assignment]
    quiescent: bool = True,
) -> FinalFacts:
    ledgers = {"sessions": list(sessions), "refunds": list(refunds)}
    return FinalFacts({"programs": [], "purchases": purchases}, ledgers, quiescent)


def purchase(pid: str, status: str, session: str | None, user: str = "u1") -> dict[str, Any]:
    return {"_id": pid, "status": status, "user_id": user, "program_id": "p",
            "stripe_session_id": session}  # fmt: skip


def refund(sid: str, pi: str) -> dict[str, Any]:
    return {"type": "stripe.refund", "id": f"re_{sid}", "payment_intent": pi, "session_id": sid}


def expire(sid: str, status: int = 200) -> dict[str, Any]:
    path = f"/v1/checkout/sessions/{sid}/expire"
    return {"type": "stripe.request", "method": "POST", "path": path, "status": status}


# ---- no_double_charge


def test_two_paid_sessions_kept_for_one_program_are_a_double_charge() -> None:
    entries = history(
        write("p1", "pending", stripe_session_id="cs_a"),
        write("p2", "pending", stripe_session_id="cs_b"),
        paid("cs_a", "pi_a"),
        paid("cs_b", "pi_b"),
    )
    two = facts([purchase("p1", "completed", "cs_a"), purchase("p2", "completed", "cs_b")])
    status, found = check("no_double_charge", entries, two)
    assert status == VIOLATED and "cs_a, cs_b" in found[0].detail
    # the same payments, one of them refunded: charged once
    refunded = facts(two.purchases, refunds=[{"payment_intent": "pi_b", "amount": 5000}])
    assert check("no_double_charge", entries, refunded)[0] == HELD
    # two users, one payment each
    apart = facts([purchase("p1", "completed", "cs_a"), purchase("p2", "completed", "cs_b", "u2")])
    assert check("no_double_charge", entries, apart)[0] == HELD
    # a session made outside the engine (never recorded by a purchase) naming the purchase
    foreign = history(write("p1", "pending", stripe_session_id="cs_a"), paid("cs_a"), paid("cs_f"))
    named = facts(
        [purchase("p1", "completed", "cs_a")],
        sessions=[{"id": "cs_f", "client_reference_id": "p1", "metadata": {}}],
    )
    assert check("no_double_charge", foreign, named)[0] == HELD
    # no decision before quiescence: a refund may still come
    assert check("no_double_charge", entries, facts(apart.purchases, quiescent=False))[0] == UNKNOWN
    assert check("no_double_charge", entries, facts(two.purchases, quiescent=False)) == (
        UNKNOWN,
        [],
    )


# ---- only_owner_cancels


def cancel_invoked(op_id: int, user: str, pid: str) -> dict[str, Any]:
    return {"type": "op.invoke", "op": "cancel", "op_id": op_id, "user_id": user,
            "purchase_id": pid}  # fmt: skip


def test_a_purchase_cancelled_by_another_users_cancel_is_caught() -> None:
    guessed = history(
        write("p1", "pending", user="victim"),
        cancel_invoked(7, "attacker", "p1"),
        {**write("p1", "cancelled", user="victim"), "req": "op7"},
    )
    status, found = check("only_owner_cancels", guessed)
    assert status == VIOLATED and "p1 of victim" in found[0].detail and "attacker" in found[0].detail
    assert found[0].evidence == (1, 2)
    # the owner's own cancel, and an expiry that is no cancel's doing, are fine
    own = history(
        write("p1", "pending", user="victim"),
        cancel_invoked(7, "victim", "p1"),
        {**write("p1", "cancelled", user="victim"), "req": "op7"},
        write("p2", "pending", user="victim"),
        cancel_invoked(8, "attacker", "p2"),  # refused: the engine wrote nothing
        {**write("p2", "expired", user="victim"), "req": "webhook-1"},
    )
    assert check("only_owner_cancels", own)[0] == HELD
    # a foreign cancel's request that writes an already cancelled purchase changes nothing
    again = history(
        cancel_invoked(7, "victim", "p1"),
        {**write("p1", "cancelled", user="victim"), "req": "op7"},
        cancel_invoked(9, "attacker", "p1"),
        {**write("p1", "cancelled", user="victim"), "req": "op9"},
    )
    assert check("only_owner_cancels", again)[0] == HELD


# ---- cancel_answered_truly


def cancel_answered(op_id: int, ok: bool, seq_status: str = "not_cancellable") -> dict[str, Any]:
    if ok:
        return {"type": "op.ok", "op": "cancel", "op_id": op_id}
    return {"type": "op.fail", "op": "cancel", "op_id": op_id, "error": seq_status,
            "message": "changed meanwhile"}  # fmt: skip


def test_a_refused_cancel_that_did_end_the_purchase_is_caught() -> None:
    lied = history(
        write("p1", "pending"),
        cancel_invoked(1, "u1", "p1"),
        write("p1", "expired"),  # its own expiry's event, delivered first
        cancel_answered(1, ok=False),
    )
    status, found = check("cancel_answered_truly", lied)
    assert status == VIOLATED and "pending to expired" in found[0].detail
    assert found[0].evidence == (1, 3)
    # a double click: the other cancel of the purchase succeeded
    double = history(
        write("p1", "pending"),
        cancel_invoked(1, "u1", "p1"),
        cancel_invoked(2, "u1", "p1"),
        write("p1", "cancelled"),
        cancel_answered(2, ok=True),
        cancel_answered(1, ok=False),
    )
    assert check("cancel_answered_truly", double)[0] == HELD
    # refused because it was paid meanwhile, or not pending to begin with
    paid_first = history(
        write("p1", "pending"),
        cancel_invoked(1, "u1", "p1"),
        write("p1", "completed"),
        cancel_answered(1, ok=False),
        cancel_invoked(2, "u1", "p1"),
        cancel_answered(2, ok=False),
    )
    assert check("cancel_answered_truly", paid_first)[0] == HELD


def crashed_answer(op_id: int) -> dict[str, Any]:
    return {"type": "op.info", "op": "cancel", "op_id": op_id, "error": "crashed"}


def session_expired(sid: str, reason: str) -> dict[str, Any]:
    return {"type": "stripe.session", "id": sid, "status": "expired", "action": f"expired:{reason}"}


def test_a_double_click_whose_winner_crashed_after_its_write_is_no_lie() -> None:
    # explore --guided, shrunk-cancel_answered_truly seed 4: op14 on i1 cancels the purchase
    # and crashes before answering (its client sees an error); op13 on i0 finds it cancelled
    crashed_winner = history(
        write("p1", "pending", stripe_session_id="cs_a"),
        cancel_invoked(13, "u1", "p1"),
        cancel_invoked(14, "u1", "p1"),
        session_expired("cs_a", "api"),
        {**write("p1", "cancelled", stripe_session_id="cs_a"), "req": "op14", "modified": True},
        crashed_answer(14),
        {**write("p1", "cancelled", stripe_session_id="cs_a"), "req": "op13", "modified": False},
        cancel_answered(13, ok=False),
    )
    assert check("cancel_answered_truly", crashed_winner) == (HELD, [])
    # still caught: the refused cancel's own write ended it, though another cancel crashed
    own_write = history(
        write("p1", "pending", stripe_session_id="cs_a"),
        cancel_invoked(13, "u1", "p1"),
        cancel_invoked(14, "u1", "p1"),
        crashed_answer(14),  # crashed before writing anything
        {**write("p1", "cancelled", stripe_session_id="cs_a"), "req": "op13", "modified": True},
        cancel_answered(13, ok=False),
    )
    status, found = check("cancel_answered_truly", own_write)
    assert status == VIOLATED and found[0].evidence == (1, 5)
    # still caught: the other cancel's request wrote, but matched nothing (the expiry event
    # this cancel's expire call caused had ended it first)
    other_matched_nothing = history(
        write("p1", "pending", stripe_session_id="cs_a"),
        cancel_invoked(13, "u1", "p1"),
        cancel_invoked(14, "u1", "p1"),
        session_expired("cs_a", "api"),
        {**write("p1", "expired", stripe_session_id="cs_a"), "req": "wh3", "modified": True},
        {**write("p1", "expired", stripe_session_id="cs_a"), "req": "op14", "modified": False},
        crashed_answer(14),
        cancel_answered(13, ok=False),
    )
    assert check("cancel_answered_truly", other_matched_nothing)[0] == VIOLATED


def test_a_cancel_refused_after_its_session_expired_by_the_clock_is_no_lie() -> None:
    # explore --guided, shrunk-no_orphan_session seed 2: the cancel stalls in a paused
    # instance; Stripe expires the session at its expires_at; the event ends the purchase;
    # the cancel, run at last, finds it expired
    stalled = history(
        write("p1", "pending", stripe_session_id="cs_a"),
        cancel_invoked(1, "u1", "p1"),
        session_expired("cs_a", "expires_at"),
        {**write("p1", "expired", stripe_session_id="cs_a"), "req": "wh12", "modified": True},
        cancel_answered(1, ok=False),
    )
    assert check("cancel_answered_truly", stalled) == (HELD, [])
    # still caught: the session expired by an expire call (this cancel's), not by the clock
    by_api = history(
        write("p1", "pending", stripe_session_id="cs_a"),
        cancel_invoked(1, "u1", "p1"),
        session_expired("cs_a", "api"),
        {**write("p1", "expired", stripe_session_id="cs_a"), "req": "wh12", "modified": True},
        cancel_answered(1, ok=False),
    )
    assert check("cancel_answered_truly", by_api)[0] == VIOLATED
    # still caught: another purchase's session expired by the clock proves nothing about this one
    other_session = history(
        write("p1", "pending", stripe_session_id="cs_a"),
        cancel_invoked(1, "u1", "p1"),
        session_expired("cs_b", "expires_at"),
        session_expired("cs_a", "api"),
        {**write("p1", "expired", stripe_session_id="cs_a"), "req": "wh12", "modified": True},
        cancel_answered(1, ok=False),
    )
    assert check("cancel_answered_truly", other_session)[0] == VIOLATED


# ---- refund_justified


def test_refunding_a_session_paid_while_its_purchase_was_pending_is_unjustified() -> None:
    entries = history(
        write("p1", "pending", stripe_session_id="cs_a"),
        created("cs_a"),
        paid("cs_a", "pi_a"),
        write("p1", "expired", stripe_session_id="cs_a"),  # released after it was paid
        refund("cs_a", "pi_a"),
    )
    status, found = check("refund_justified", entries)
    assert status == VIOLATED and found[0].purchase_id == "p1"
    assert found[0].evidence == (2, 4)


def test_refunds_after_a_close_a_release_or_a_second_payment_are_justified() -> None:
    closed_first = history(
        write("p1", "pending", stripe_session_id="cs_a"),
        expire("cs_a", 500),  # asked to close before the customer paid: their risk
        paid("cs_a", "pi_a"),
        refund("cs_a", "pi_a"),
    )
    assert check("refund_justified", closed_first)[0] == HELD
    released_first = history(
        write("p1", "pending", stripe_session_id="cs_a"),
        write("p1", "cancelled", stripe_session_id="cs_a"),
        paid("cs_a", "pi_a"),
        refund("cs_a", "pi_a"),
    )
    assert check("refund_justified", released_first)[0] == HELD
    second_payment = history(
        write("p1", "pending", stripe_session_id="cs_a"),
        paid("cs_a", "pi_a"),
        write("p1", "completed", stripe_session_id="cs_a"),
        paid("cs_b", "pi_b"),  # an old tab of the same purchase, named by client_reference_id
        refund("cs_b", "pi_b"),
    )
    named = facts([], sessions=[{"id": "cs_b", "client_reference_id": "p1", "metadata": {}}])
    assert check("refund_justified", second_payment, named)[0] == HELD
    nobody = history(paid("cs_x", "pi_x"), refund("cs_x", "pi_x"))
    assert check("refund_justified", nobody)[0] == HELD


# ---- no_stuck_purchase


def test_a_purchase_still_pending_after_quiescence_is_stuck() -> None:
    sessions = [{"id": "cs_a", "status": "complete", "payment_status": "unpaid"}]
    stuck = facts([purchase("p1", "pending", "cs_a")], sessions)
    status, found = check("no_stuck_purchase", history(write("p1", "pending")), stuck)
    assert status == VIOLATED and "complete/unpaid" in found[0].detail
    assert found[0].evidence == (0,)
    done = facts([purchase("p1", "failed", "cs_a")], sessions)
    assert check("no_stuck_purchase", [], done)[0] == HELD
    unsettled = facts([purchase("p1", "pending", "cs_a")], sessions, quiescent=False)
    assert check("no_stuck_purchase", [], unsettled)[0] == UNKNOWN


def granted(pid: str) -> dict[str, Any]:
    return {"type": "fulfilment", "purchase_id": pid, "session_id": f"cs_{pid}"}


def emailed(pid: str, outcome: str = "sent") -> dict[str, Any]:
    return {"type": f"email.{outcome}", "purchase_id": pid, "key": f"receipt:{pid}"}


def test_a_completed_purchase_never_granted_or_never_receipted_is_caught() -> None:
    done = facts([purchase("p1", "completed", "cs_p1"), purchase("p2", "completed", "cs_p2")])
    served = history(granted("p1"), emailed("p1"), granted("p2"), emailed("p2", "failed"),
                     emailed("p2"))  # fmt: skip
    assert check("completion_delivered", served, done)[0] == HELD
    # p2's receipt failed and was never retried; p1 was never granted access
    status, found = check(
        "completion_delivered",
        history(emailed("p1"), granted("p2"), emailed("p2", "failed")),
        done,
    )
    assert status == VIOLATED
    assert [(v.purchase_id, v.evidence) for v in found] == [("p1", ()), ("p2", (2,))]
    assert "never granted" in found[0].detail and "failed at t=2.000" in found[1].detail
    # a repeat the provider deduplicated delivered nothing for this purchase
    repeat = history(granted("p1"), emailed("p1", "deduplicated"))
    only_p1 = facts([purchase("p1", "completed", "cs_p1")])
    status, found = check("completion_delivered", repeat, only_p1)
    assert status == VIOLATED and "none was ever sent" in found[0].detail
    # only completed purchases are owed anything; an unfinished run is unknown
    ended = facts([purchase("p1", "refunded", "cs_p1"), purchase("p2", "pending", "cs_p2")])
    assert check("completion_delivered", [], ended)[0] == HELD
    unsettled = facts([purchase("p1", "completed", "cs_p1")], quiescent=False)
    assert check("completion_delivered", [], unsettled)[0] == UNKNOWN


def test_completion_delivered_judges_an_id_that_is_not_a_string() -> None:
    """A broken engine's purchase id (an object) is judged under the tagged id the ledgers
    give it, not a TypeError that would call the run folder unreadable."""
    odd = {"_id": {"n": 1}, "status": "completed", "user_id": "u1", "program_id": "p"}
    tagged = as_id({"n": 1})
    delivered = history(granted(tagged), emailed(tagged))
    assert check("completion_delivered", delivered, facts([odd]))[0] == HELD
    status, found = check("completion_delivered", history(emailed(tagged)), facts([odd]))
    assert status == VIOLATED and found[0].purchase_id == tagged


# ---- against their mutants, in the scenarios whose hazard they are


def invariants(stem: str, seed: int, engine: str, tmp_path: Path) -> dict[str, str]:
    scenario = load_scenario(CI / f"{stem}.toml")
    return run_scenario(scenario, seed, engine, tmp_path / engine.replace(":", "_")).summary[
        "invariants"
    ]


def test_a_refund_of_the_session_that_completed_the_purchase_is_unjustified() -> None:
    """Two notices of one late payment: one re-seated it (completed), one refunded it."""
    entries = history(
        write("p1", "cancelled", stripe_session_id="cs_a"),
        paid("cs_a", "pi_a"),
        write("p1", "completed", stripe_session_id="cs_a"),
        refund("cs_a", "pi_a"),
    )
    both = facts([purchase("p1", "completed", "cs_a")])
    status, found = check("refund_justified", entries, both)
    assert status == VIOLATED and "keeps both the program and the money" in found[0].detail
    # refunded and left refunded: the late payment given back, as it should be
    given_back = facts([purchase("p1", "refunded", "cs_a")])
    assert check("refund_justified", entries, given_back)[0] == HELD
    # a second tab's payment refunded while the first tab's session completed the purchase
    second = history(
        write("p1", "pending", stripe_session_id="cs_a"),
        paid("cs_a", "pi_a"),
        write("p1", "completed", stripe_session_id="cs_a"),
        paid("cs_b", "pi_b"),
        refund("cs_b", "pi_b"),
    )
    assert check("refund_justified", second, facts([purchase("p1", "completed", "cs_a")]))[0] == HELD


def test_second_tab_catches_a_new_purchase_on_buy_again(tmp_path: Path) -> None:
    assert (
        invariants("second-tab", 1, "mutant:new-purchase-on-buy-again", tmp_path)[
            "no_double_charge"
        ]
        == VIOLATED
    )
    assert invariants("second-tab", 1, "reference", tmp_path)["no_double_charge"] == HELD


def test_a_duplicate_notice_refunded_is_caught(tmp_path: Path) -> None:
    assert (
        invariants("double-click", 1, "mutant:refund-duplicate-notice", tmp_path)[
            "refund_justified"
        ]
        == VIOLATED
    )
    assert invariants("double-click", 1, "reference", tmp_path)["refund_justified"] == HELD


def test_the_reference_honours_a_payment_that_beat_its_expiry_of_the_old_tab(
    tmp_path: Path,
) -> None:
    """Buy again a minute before expiry while paying in the old tab: the payment lands between
    the engine's look at the session and its expire call. Ending the purchase anyway and
    refunding the payment later (as the reference did) broke refund_justified on seed 4."""
    found = invariants("buy-again-near-expiry", 4, "reference", tmp_path)
    assert found["refund_justified"] == HELD and found["no_lost_payment"] == HELD


def test_a_bounced_bank_debit_left_pending_is_caught(tmp_path: Path) -> None:
    assert (
        invariants("bank-debit-over-days", 2, "mutant:ignore-async-failure", tmp_path)[
            "no_stuck_purchase"
        ]
        == VIOLATED
    )
    assert invariants("bank-debit-over-days", 1, "reference", tmp_path)["no_stuck_purchase"] == HELD


def test_receipts_an_outage_refused_and_nobody_retried_are_caught(tmp_path: Path) -> None:
    for engine in ("mutant:forgets-owed-receipts", "seed"):
        assert invariants("email-outage", 1, engine, tmp_path)["completion_delivered"] == VIOLATED
    assert invariants("email-outage", 1, "reference", tmp_path)["completion_delivered"] == HELD


def test_a_success_page_that_completes_without_granting_is_caught(tmp_path: Path) -> None:
    def judged(engine: str) -> str:
        return invariants("bank-debit-over-days", 1, engine, tmp_path)["completion_delivered"]

    assert judged("mutant:redirect-leaves-the-grant") == VIOLATED
    assert judged("reference") == HELD


def test_an_expiry_that_came_before_the_stored_500_is_kept(tmp_path: Path) -> None:
    """The expiry of a session whose create's outcome was still unknown names the purchase;
    the sweep's replay would then meet Stripe's stored 500 and fail it. Kept (it has the
    create's own terms), the expiry ends the purchase with that session recorded; dropped, the
    session belongs to nobody."""

    def orphans(engine: str) -> str:
        return invariants("expiry-before-the-stored-500", 3, engine, tmp_path)["no_orphan_session"]

    assert orphans("mutant:forgets-an-early-expiry") == VIOLATED
    assert orphans("reference") == HELD


def test_a_bounced_debit_whose_event_was_given_up_is_failed_by_the_sweep(tmp_path: Path) -> None:
    """Stripe gave up on every `async_payment_failed`; the sweep's session reads `complete`,
    `unpaid`, as for a debit in flight. The PaymentIntent tells them apart: the reference
    fails the purchase and frees its seat; a sweep that waits for the event never does."""

    def judged(engine: str) -> dict[str, str]:
        return invariants("bounced-debit-event-lost", 1, engine, tmp_path)

    waiting = judged("mutant:waits-for-the-bounce-event")
    assert waiting["no_stuck_purchase"] == VIOLATED
    assert waiting["counter_consistent"] == VIOLATED
    fixed = judged("reference")
    assert fixed["no_stuck_purchase"] == HELD
    assert fixed["counter_consistent"] == HELD


def test_a_sweep_that_meets_a_stalled_lock_holder_goes_on(tmp_path: Path) -> None:
    """The sweep times out on a session lock a stalled expiry handler holds: the reference
    leaves that purchase to its next pass; letting the timeout escape fails the sweep."""

    def judged(engine: str) -> dict[str, str]:
        return invariants("sweep-meets-a-stalled-holder", 1, engine, tmp_path)

    assert judged("mutant:sweep-trips-on-a-held-lock")["no_engine_exception"] == VIOLATED
    fixed = judged("reference")
    assert fixed["no_engine_exception"] == HELD
    assert fixed["no_stuck_purchase"] == HELD


def test_a_debit_settled_behind_a_live_session_is_learnt_by_the_sweep(tmp_path: Path) -> None:
    """Sessions live 24 h, bank debits clear or bounce within two, and Stripe gives up on
    every event that says so. The reference's sweep asks about pending purchases whose session
    is still live, and completes or fails them; one that asks only after `expires_at` leaves a
    paid customer without access and a bounced one holding a seat, for a day."""

    def judged(engine: str) -> dict[str, str]:
        return invariants("debit-settles-behind-a-long-session", 1, engine, tmp_path)

    late = judged("mutant:asks-only-after-expiry")
    assert late["no_lost_payment"] == VIOLATED
    assert late["no_stuck_purchase"] == VIOLATED
    assert late["counter_consistent"] == VIOLATED
    fixed = judged("reference")
    assert fixed["no_lost_payment"] == HELD
    assert fixed["no_stuck_purchase"] == HELD
    assert fixed["counter_consistent"] == HELD


def test_a_legacy_tab_paid_while_stripe_gave_up_on_its_events_is_learnt_by_the_sweep(
    tmp_path: Path,
) -> None:
    """An earlier release cancelled a purchase without expiring its session; its customer pays
    there by bank debit while Stripe gives up on every event. The reference watches such
    purchases (found once per instance) and refunds or re-seats the payment; an engine that
    asks only about pending purchases keeps money for a cancelled purchase."""

    def judged(engine: str) -> str:
        return invariants("legacy-debit-behind-lost-events", 2, engine, tmp_path)["no_lost_payment"]

    assert judged("mutant:forgets-legacy-releases") == VIOLATED
    assert judged("reference") == HELD


def test_a_foreign_payment_behind_lost_events_is_learnt_from_stripes_undelivered_events(
    tmp_path: Path,
) -> None:
    """Sessions made outside the engine are paid while the endpoint fails and Stripe gives up
    on their events. The reference lists the events Stripe never delivered and keeps each
    payment for a human; an engine that reads only what was delivered never hears of them."""

    def judged(engine: str) -> str:
        scenario = "foreign-payment-behind-lost-events"
        return invariants(scenario, 1, engine, tmp_path)["no_lost_payment"]

    assert judged("mutant:reads-only-delivered-events") == VIOLATED
    assert judged("reference") == HELD
