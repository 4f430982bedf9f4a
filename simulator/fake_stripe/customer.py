"""The customer in the Checkout tab: pays, is declined and retries, or pays with a delayed
method. These are the only way money moves at the fake, so every flow is explicit.

Checkout offers only the methods the session was created with (`payment_method_types`): a
card-only session cannot be paid by bank debit, so that customer is turned away."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from simulator import virtual_time
from simulator.fake_stripe.objects import CheckoutSession
from simulator.fake_stripe.state import StripeState

Flow = Literal["card", "decline", "decline_then_card", "async_success", "async_failure"]
FLOWS: tuple[str, ...] = ("card", "decline", "decline_then_card", "async_success", "async_failure")
ASYNC_FLOWS = ("async_success", "async_failure")
#: payment method types that settle later (the session completes `unpaid` first)
DELAYED_METHODS: tuple[str, ...] = (
    "us_bank_account",
    "sepa_debit",
    "bacs_debit",
    "acss_debit",
    "au_becs_debit",
    "boleto",
    "konbini",
    "customer_balance",
)


async def customer_pay(
    state: StripeState,
    session_id: str,
    flow: str,
    *,
    retry_after_s: float,
    settle_after_s: float,
    on_submitted: Callable[[], None] | None = None,
) -> bool:
    """False, and nothing happens, when the session is not open (expired, complete) or does not
    offer the flow's method. `on_submitted` runs when a delayed method completes the session
    unpaid (Checkout then sends the customer to the success page)."""
    if flow not in FLOWS:
        raise ValueError(f"unknown payment flow {flow!r}; expected one of {FLOWS}")
    session = state.sessions.get(session_id)
    if session is None:
        raise KeyError(f"no such checkout session {session_id!r}")
    if not still_open(state, session):
        state.record("stripe.customer", session_id=session_id, flow=flow, result="not_open")
        return False
    if not offers(session, flow):
        state.record(
            "stripe.customer", session_id=session_id, flow=flow, result="method_unavailable"
        )
        return False
    state.record("stripe.customer", session_id=session_id, flow=flow, result="paying")
    if flow == "card":
        state.card_succeeded(session)
    elif flow == "decline":
        state.card_declined(session)
    elif flow == "decline_then_card":
        state.card_declined(session)
        await virtual_time.sleep(retry_after_s)  # typing another card number
        if still_open(state, session):
            state.card_succeeded(session)
        else:
            state.record("stripe.customer", session_id=session_id, flow=flow, result="not_open")
    else:
        state.async_payment_started(session, delayed_method(session))
        if on_submitted is not None:
            on_submitted()
        await virtual_time.sleep(settle_after_s)  # the bank debit clears, or bounces
        state.async_payment_settled(session, succeeded=flow == "async_success")
    return True


def still_open(state: StripeState, session: CheckoutSession) -> bool:
    """Open, and not past `expires_at` (expired on the spot if the sweeper has not run yet)."""
    if session.status == "open" and state.now() >= session.expires_at:
        state.expire_session(session, reason="expires_at")
    return session.status == "open"


def delayed_method(session: CheckoutSession) -> str:
    """The delayed method a customer of an async flow pays with: the session's first one."""
    return next(t for t in session.payment_method_types if t in DELAYED_METHODS)


def offers(session: CheckoutSession, flow: str) -> bool:
    """Whether Checkout shows this session's customer the method `flow` pays with."""
    types = session.payment_method_types
    if flow in ASYNC_FLOWS:
        return any(t in DELAYED_METHODS for t in types)
    return "card" in types
