"""Known-bad variants of the reference engine: the harness must catch every one of them.

Each mutant is a `ReferenceEngine` that differs in ONE step (one or two small overrides), and
names the invariants it must violate. A suite that lets a mutant pass is too weak to trust on a
real engine (mutation testing). They register as engines `mutant:{name}` (`paysim engines`).

Some reference steps are only reachable through a longer method; where that forced a workaround
it is said in the mutant's docstring (see also the seams noted there).
"""

from __future__ import annotations

import inspect
import json
from contextlib import (
    AbstractAsyncContextManager,
    AsyncExitStack,
    asynccontextmanager,
    nullcontext,
    suppress,
)
from contextvars import ContextVar
from dataclasses import dataclass, replace
from typing import Any

import stripe
from pymongo.errors import DuplicateKeyError

from reference_impl.errors import Busy, UpstreamError
from reference_impl.ports import EngineEnv, EngineFactory, PurchaseResult
from reference_impl.reference_engine import (
    OutcomeUnknown,
    ReferenceEngine,
    _purchase_id,
)
from reference_impl.schema import COMPLETED, FAILED, PENDING, REFUNDED, SEAT_HOLDS
from reference_impl.seats import HOLD_RELEASED, MOVES, WITHOUT_SEAT_MOVES, SeatLedger
from reference_impl.webhook_signature import InvalidWebhook, verify_event
from simulator.engines import EXTRA, EXTRA_DESCRIPTIONS

#: the lock wait of `short-lock-timeout`: shorter than a create takes under any store latency
SHORT_LOCK_TIMEOUT_S = 0.05
#: where `event-recorded-first` keeps the ids of the events it considers handled
PROCESSED_EVENTS = "processed_events"
PURCHASE_LOCK_PREFIX = "purchase:create:"


class _NoSlotGuard(ReferenceEngine):
    """Shared step: the purchase slot is overwritten instead of claimed, so the store no longer
    refuses a second pending purchase for one (user, program) — only the lock stands in the way."""

    async def _claim_slot(
        self, slot_id: str, seen: dict[str, Any] | None, purchase_id: str, now: float
    ) -> bool:
        await self.slots.update_one(
            {"_id": slot_id}, {"$set": {"purchase_id": purchase_id, "at": now}}, upsert=True
        )
        return True


class NoCreateLock(_NoSlotGuard):
    """Creates (and cancels) without the purchase lock and without the slot guard:
    two concurrent clicks both miss the pending purchase and both insert one.

    Violates single_pending_per_user (and reserves one seat per click for the same user)."""

    def _lock(self, key: str, timeout: float) -> AbstractAsyncContextManager[Any]:
        if key.startswith(PURCHASE_LOCK_PREFIX):
            return nullcontext()
        return super()._lock(key, timeout)


class ShortLockTimeout(_NoSlotGuard):
    """Waits 0.05 s for the purchase lock and, on timeout, does the work anyway without it; with
    no slot guard behind the lock, a caller that times out while the holder is slow
    (before its insert) creates a second pending purchase. (With the slot guard kept, every lock
    mistake is harmless in the reference, so a lock-only mutant would be equivalent.)

    Violates single_pending_per_user when the holder is slow (store latency, slow handler)."""

    def _lock(self, key: str, timeout: float) -> AbstractAsyncContextManager[Any]:
        if key.startswith(PURCHASE_LOCK_PREFIX):
            return _proceed_on_timeout(super()._lock(key, SHORT_LOCK_TIMEOUT_S))
        return super()._lock(key, timeout)


class RedisNoFence(_NoSlotGuard):
    """Claims the purchase slot by overwriting it: neither the fence (the lease's token) nor the
    slot's own guard (insert by `_id`, swing from the purchase it saw), which would each refuse
    the stale write on their own. With a lease lock that is enough until a holder stalls past its
    lease: the next holder creates its purchase, then the stale one wakes and creates a second.

    Violates single_pending_per_user under lease expiry (lease_pause, redis_restart), or wherever
    two holders of "the" lock overlap (two in-memory lock tables in a rolling deploy)."""


@asynccontextmanager
async def _proceed_on_timeout(lock: AbstractAsyncContextManager[Any]) -> Any:
    """Hold `lock` if it is granted in time; otherwise run the body anyway (the bug)."""
    async with AsyncExitStack() as stack:
        with suppress(Busy):  # timed out: run the body anyway (the bug)
            await stack.enter_async_context(lock)
        yield


class _CheckThenActLedger(SeatLedger):
    """Reserve by reading the count, comparing with the limit, then an unconditional `$inc`."""

    async def _count_up(self, program: dict[str, Any], ref: str, move: dict[str, Any]) -> bool:
        current = await self._programs.find_one({"_id": program["_id"]})
        if current is None or current["class_rep_count"] >= program["class_rep_limit"]:
            return False
        # another request may reserve between the read above and the write below
        await self._programs.update_one(
            {"_id": program["_id"]},
            {"$inc": {"class_rep_count": 1}, "$set": {f"{MOVES}.{ref}": move}},
        )
        return True


class CheckThenActCounter(ReferenceEngine):
    """Reserves a class-rep seat by read-compare-then-increment instead of one conditional update:
    a herd of buyers all read a free seat before any of them increments.

    Violates no_limit_bypass (under a herd, seats held exceed the limit)."""

    def __init__(self, env: EngineEnv) -> None:
        super().__init__(env)
        self.seats = _CheckThenActLedger(env.store, env.ids, env.clock)


class NoTransitionGuard(ReferenceEngine):
    """Completes a paid session with an unconditional status write (no `status: pending` in the
    filter) and fulfils every time it is told: each duplicate delivery fulfils again.

    Violates no_double_completion under duplicate deliveries."""

    async def _honour_payment(self, purchase: dict[str, Any], session: dict[str, Any]) -> None:
        fields = self._paid_fields(session)
        await self.purchases.update_one(
            {"_id": purchase["_id"]},
            {"$set": {"status": COMPLETED, **fields}},
        )
        await self._fulfil({**purchase, "status": COMPLETED, **fields})


class ReleaseOnPaymentFailed(ReferenceEngine):
    """Gives the seat back on `payment_intent.payment_failed` but leaves the purchase pending. A
    decline does not end a Checkout Session: the customer pays with another card, the purchase
    completes holding no seat, and the freed seat has meanwhile been sold to someone else.

    Violates no_limit_bypass (two holders of one seat) and counter_consistent (the count is one
    short of the seats held). The ledger release is idempotent, so it leaks once, not per retry."""

    def _webhook_handlers(self) -> dict[str, Any]:
        return {**super()._webhook_handlers(), "payment_intent.payment_failed": self._on_declined}

    async def _on_declined(self, intent: dict[str, Any]) -> None:
        purchase = await self._purchase_for(intent)
        if purchase and purchase["status"] == PENDING and purchase.get("seat_ref"):
            await self.seats.release(purchase["program_id"], purchase["seat_ref"])


class DecrementWithoutStateChange(ReferenceEngine):
    """On `checkout.session.expired` decrements the counter with a bare `$inc: -1`, without the
    conditional transition or the ledger: every delivery of the event decrements again (and the
    purchase stays pending, so reconcile releases its seat once more).

    Violates counter_consistent (the count drifts below the seats held, even negative)."""

    async def _on_session_expired(self, session: dict[str, Any]) -> None:
        purchase = await self._purchase_for(session)
        if purchase is not None and purchase["class_rep"]:
            await self.programs.update_one(
                {"_id": purchase["program_id"]}, {"$inc": {"class_rep_count": -1}}
            )


class NoCompensation(ReferenceEngine):
    """On a definite Stripe failure at create, marks the purchase failed but keeps its seat (the
    seed's leak). The count is kept and the reservation record dropped, as the seed has it: a
    leak the ledger still listed would be given back by reconcile's ledger repair.

    Violates counter_consistent (one seat leaked per failed create)."""

    async def _fail_create(self, purchase: dict[str, Any]) -> bool:
        before = await self.purchases.find_one_and_update(
            {"_id": purchase["_id"], "status": PENDING}, {"$set": {"status": FAILED}}
        )
        if before is not None and before.get("seat_ref"):
            await self.env.store[SEAT_HOLDS].update_one(
                {"_id": before["seat_ref"]}, {"$set": {"state": HOLD_RELEASED}}
            )
        return before is not None


class IgnoreExpired(ReferenceEngine):
    """No `checkout.session.expired` handler, and reconcile never settles expired sessions: an
    abandoned checkout keeps its seat (and a pending purchase) forever.

    Violates counter_consistent (seats held by sessions nobody can pay any more)."""

    def _webhook_handlers(self) -> dict[str, Any]:
        handlers = super()._webhook_handlers()
        del handlers["checkout.session.expired"]
        return handlers

    async def _resolve_expired_sessions(self, now: float) -> None:
        return None


class CancelWithoutExpire(ReferenceEngine):
    """Cancel does not expire the Stripe session (the customer can still pay in the open tab),
    and a payment for a released purchase completes it without taking a seat again (as the seed
    does) instead of re-seating or refunding.

    Violates no_limit_bypass (pay-after-cancel while the seat was resold) and counter_consistent."""

    async def _cancel_session(self, session_id: str) -> bool:
        return True

    async def _reseat_or_refund(self, purchase: dict[str, Any], session: dict[str, Any]) -> None:
        won = await self._transition(
            purchase["_id"], purchase["status"], COMPLETED, self._paid_fields(session)
        )
        if won is not None:
            await self._fulfil(won)


class FulfilBeforeCommit(ReferenceEngine):
    """Fulfils a pending purchase first and only then tries the conditional transition: every
    concurrent delivery that read `pending` fulfils (each under its own completion's key),
    whichever of them wins the transition.

    Violates no_double_completion under concurrent deliveries (two instances, or a redirect)."""

    async def _honour_payment(self, purchase: dict[str, Any], session: dict[str, Any]) -> None:
        if purchase["status"] != PENDING:
            return await super()._honour_payment(purchase, session)
        fields = self._paid_fields(session)
        await self._fulfil({**purchase, **fields})
        await self._transition(purchase["_id"], PENDING, COMPLETED, fields)


class EventRecordedFirst(ReferenceEngine):
    """Records the event id in `processed_events` before processing it and acknowledges known ids
    unprocessed: a crash (or a 5xx) between recording and completing, and Stripe's retry is
    skipped, so the payment is lost.

    Violates no_lost_payment under crash faults. Note: reconcile's expired-session sweep still
    honours the paid session once its `expires_at` has passed; before that the payment is lost."""

    async def _dispatch(self, event: dict[str, Any]) -> int:
        try:
            await self.env.store[PROCESSED_EVENTS].insert_one({"_id": event["id"]})
        except DuplicateKeyError:
            return 200  # "already processed": or only recorded by a request that died
        return await super()._dispatch(event)


class NoSignatureCheck(ReferenceEngine):
    """Accepts webhooks without verifying the signature (`construct_event_without_verification`):
    anyone who can reach the endpoint can complete a purchase.

    Violates signature_enforced."""

    def _verified_event(self, payload: bytes, signature_header: str | None) -> dict[str, Any]:
        try:
            event = json.loads(payload)
        except ValueError as exc:
            raise InvalidWebhook("not JSON") from exc
        if not isinstance(event, dict) or not isinstance(event.get("data"), dict):
            raise InvalidWebhook("not an event")
        return event


class UnpaidFulfilment(ReferenceEngine):
    """Treats `checkout.session.completed` with `payment_status: unpaid` (a delayed method whose
    money has not arrived, and may never) as paid, and fulfils at once.

    Violates no_unpaid_fulfilment."""

    async def _on_session_paid_or_pending(self, session: dict[str, Any]) -> None:
        await super()._on_session_paid_or_pending({**session, "payment_status": "paid"})


class OrphanSession(ReferenceEngine):
    """On a timeout at Stripe create, marks the purchase failed and releases the seat although the
    session may exist: no intent resolution, so a session that landed is referenced by nobody
    (and the retry creates a second one).

    Violates no_orphan_session."""

    async def _open_session(self, purchase: dict[str, Any]) -> PurchaseResult:
        try:
            return await super()._open_session(purchase)
        except UpstreamError as exc:
            if not exc.outcome_known:
                await self._end_pending(purchase["_id"], FAILED)
            raise


class TrustsClientReference(ReferenceEngine):
    """Completes the purchase a paid session names in `client_reference_id` or metadata, without
    asking whether the engine issued that session: a session made outside the engine (a Payment
    Link, the dashboard) at the full price completes someone's purchase.

    Violates payment_matches_purchase."""

    async def _foreign_session(
        self, purchase: dict[str, Any], session: dict[str, Any]
    ) -> str | None:
        if purchase.get("stripe_session_id") != session["id"]:
            await self.purchases.update_one(
                {"_id": purchase["_id"]}, {"$set": {"stripe_session_id": session["id"]}}
            )
        return None


class SkipsAmountCheck(ReferenceEngine):
    """Never compares the paid amount with the purchase's: a completion of the purchase's own
    session paying 1 cent (or carrying no PaymentIntent) completes it.

    Violates payment_matches_purchase."""

    def _wrong_amount(self, purchase: dict[str, Any], session: dict[str, Any]) -> str | None:
        return None


class SkipsCurrencyCheck(ReferenceEngine):
    """Never compares the session's currency with the purchase's: 5000 EUR cents pay for 5000
    USD cents.

    Violates payment_matches_purchase."""

    def _wrong_currency(self, purchase: dict[str, Any], session: dict[str, Any]) -> str | None:
        return None


class SkipsModeCheck(ReferenceEngine):
    """Never checks the session's mode: a `subscription` or `setup` session completes a
    one-time purchase.

    Violates payment_matches_purchase."""

    def _wrong_mode(self, purchase: dict[str, Any], session: dict[str, Any]) -> str | None:
        return None


class ReparsesHeader(ReferenceEngine):
    """Verifies the HMAC with the SDK but reads the timestamp for the staleness check with its
    own parser (which strips spaces), as the reference did before: ` t=<now>,` prepended to a
    captured day-old header passes both, and `t=<t>=x` raises.

    Violates signature_enforced (and no_engine_exception)."""

    def _verified_event(self, payload: bytes, signature_header: str | None) -> dict[str, Any]:
        event = verify_event(
            payload,
            signature_header,
            self.env.webhook_secret,
            clock=_Frozen(float("-inf")),  # the SDK's HMAC check only
            tolerance=0.0,
        )
        assert signature_header is not None
        timestamp = next(
            int(v)
            for k, _, v in (i.partition("=") for i in signature_header.split(","))
            if k.strip() == "t"
        )
        if timestamp < self.env.clock.now() - self.config.webhook_tolerance:
            raise InvalidWebhook("stale")
        return event


class NoShapeCheck(ReferenceEngine):
    """Reads the event's object as sent, without checking the shape of any field: a missing id
    is a KeyError (500), an operator in `client_reference_id` goes into a store query.

    Violates signature_enforced (a malformed body must get 400 and write nothing)."""

    def _webhook_session(self, event: dict[str, Any]) -> dict[str, Any]:
        obj: dict[str, Any] = event["data"]["object"]
        return obj


class UnguardedWebhook(NoShapeCheck):
    """The webhook handler of the engine before issue 11: no shape check and no last-resort
    handler, so a malformed but correctly signed body raises out of `handle_webhook`.

    Violates no_engine_exception (and signature_enforced)."""

    def _on_handler_error(self, exc: Exception) -> int:
        raise exc


class RetriesUnfinishable(ReferenceEngine):
    """Answers 500 to a paid session that names no purchase of the engine (the pre-issue-11
    answer for an unknown PaymentIntent), instead of keeping it for a human: Stripe retries an
    event that can never succeed for three days.

    Violates webhooks_acknowledged."""

    async def _dead_letter(
        self, session: dict[str, Any], reason: str, purchase_id: str | None = None
    ) -> None:
        if purchase_id is None:
            raise UpstreamError("no purchase for this payment")
        await super()._dead_letter(session, reason, purchase_id)


@dataclass(frozen=True)
class _Frozen:
    at: float

    def now(self) -> float:
        return self.at


class RefundDuplicateNotice(ReferenceEngine):
    """Takes a second notice of a payment it has already honoured (a duplicate delivery, the
    success page racing the webhook) for a second payment, and refunds it: the customer is
    served and refunded for a session they paid once.

    Violates refund_justified."""

    async def _honour_payment(self, purchase: dict[str, Any], session: dict[str, Any]) -> None:
        if purchase["status"] == COMPLETED and purchase.get("stripe_session_id") == session["id"]:
            await self._refund(session, purchase)
            return
        await super()._honour_payment(purchase, session)


class NewPurchaseOnBuyAgain(ReferenceEngine):
    """Buy again on a pending purchase starts a new purchase with a new Checkout Session and
    leaves the old one open: a customer who pays in both tabs is charged twice.

    Violates no_double_charge (and single_pending_per_user)."""

    async def _reuse_pending(self, purchase: dict[str, Any]) -> PurchaseResult | None:
        if purchase.get("stripe_session_id") is None:
            return await super()._reuse_pending(purchase)
        return None


class IgnoreAsyncFailure(ReferenceEngine):
    """Ignores `checkout.session.async_payment_failed`: a bank debit that bounced leaves its
    purchase pending forever (the session is complete, so no sweep ever expires it), its
    customer neither served nor told, its seat held for nobody.

    Violates no_stuck_purchase."""

    async def _on_session_payment_failed(self, session: dict[str, Any]) -> None:
        return None


class ReseatWithoutSlotCheck(ReferenceEngine):
    """A late payment for a released purchase is re-seated even when the user has bought the
    program again since (the slot points at their newer purchase): the user now holds two
    purchases of one program and paid for both.

    Reached by legacy-cancelled-open-tab (a user who bought again pays the old tab).
    Violates no_double_charge."""

    async def _may_reclaim_slot(self, purchase: dict[str, Any]) -> bool:
        return True


class ReseatPastTheLimit(ReferenceEngine):
    """Re-seats a late payment without reserving a seat (the seat it held was released when the
    purchase was cancelled), as if the seat were still its own.

    Reached by legacy-cancelled-open-tab. Violates no_limit_bypass / counter_consistent."""

    async def _reseat_or_refund(self, purchase: dict[str, Any], session: dict[str, Any]) -> None:
        await super()._reseat_or_refund({**purchase, "class_rep": False}, session)


class ExpireIgnoringPayment(ReferenceEngine):
    """Buy again near expiry ends the old purchase even when its expiry was refused because the
    customer had just paid the old tab (the reference's own bug before this mutant's scenario
    found it): the payment is later refunded and the customer asked to pay again.

    Reached by buy-again-near-expiry. Violates refund_justified."""

    async def _expire_session(self, session_id: str) -> bool:
        await super()._expire_session(session_id)
        return True


# ---------------------------------------------------------------- paths issue 12 reached
#: set while a mutant's step runs, for an override further down to know it (as the reference
#: passes its purchase lease to `_claim_slot`)
_SEATLESS: ContextVar[bool] = ContextVar("mutant_seatless", default=False)
_RESEATING: ContextVar[bool] = ContextVar("mutant_reseating", default=False)


class NoProgramCheck(ReferenceEngine):
    """Reads the program and goes on without checking that it exists: a customer following an
    old link to a program withdrawn since gets a TypeError (an HTTP 500), not "not found".

    Reached by come-back-after-buying. Violates no_engine_exception."""

    async def _program(self, program_id: str) -> dict[str, Any]:
        program: dict[str, Any] = await self.programs.find_one(
            {"_id": program_id}, WITHOUT_SEAT_MOVES
        )
        return program


class TakesOverAFreshSlot(ReferenceEngine):
    """Takes a slot that names no purchase yet for abandoned at once, instead of answering busy
    while it is fresh: a click landing between another click's slot claim and its intent record
    starts a second purchase for the user.

    Reached by impatient-clicks-slow-stripe. Violates single_pending_per_user."""

    def _being_created(self, slot: dict[str, Any]) -> bool:
        return False


class SellsWhatTheyOwn(ReferenceEngine):
    """Does not look whether the user already owns the program: a customer who paid, forgot and
    clicks Buy again is sold it a second time.

    Reached by come-back-after-buying. Violates no_double_charge."""

    def _owned(self, purchase: dict[str, Any]) -> bool:
        return False


class NewPurchaseOnRetry(ReferenceEngine):
    """A second click that finds the first click's intent (no Checkout Session yet) starts a
    purchase of its own instead of resuming that one with its idempotency key: two pending
    purchases for one user, two sessions.

    Reached by impatient-clicks-slow-stripe. Violates single_pending_per_user."""

    async def _reuse_pending(self, purchase: dict[str, Any]) -> PurchaseResult | None:
        if purchase.get("stripe_session_id") is None:
            return None
        return await super()._reuse_pending(purchase)


class SlotGuardOnlyForClassRep(ReferenceEngine):
    """Takes the per-user slot as a guard of seats only: a purchase without a class-rep seat
    that loses the slot to another click goes ahead anyway.

    Reached by impatient-clicks-slow-stripe (two clicks at once, no seat). Violates
    single_pending_per_user."""

    async def _start_purchase(
        self,
        user_id: str,
        program: dict[str, Any],
        class_rep: bool,
        slot: dict[str, Any] | None,
    ) -> PurchaseResult:
        seatless = _SEATLESS.set(not class_rep)
        try:
            return await super()._start_purchase(user_id, program, class_rep, slot)
        finally:
            _SEATLESS.reset(seatless)

    async def _claim_slot(
        self, slot_id: str, seen: dict[str, Any] | None, purchase_id: str, now: float
    ) -> bool:
        return await super()._claim_slot(slot_id, seen, purchase_id, now) or _SEATLESS.get()


class BuyAgainIgnoresAReseat(ReferenceEngine):
    """Takes over the slot of an ended purchase without marking that purchase superseded (the
    reference before issue 12's guided search): an old tab paid while Buy again is being made
    re-seats the old purchase, Buy again goes ahead all the same, and the user pays twice.

    Reached by old-tab-paid-during-buy-again. Violates no_double_charge."""

    async def _supersede(self, seen: dict[str, Any] | None, purchase_id: str) -> bool:
        return True


class KeyInUseIsARefusal(ReferenceEngine):
    """Takes Stripe's 409 `idempotency_key_in_use` for a refusal: a second click resuming the
    first click's intent while Stripe still executes its create fails the purchase and gives
    the seat back, and the session Stripe then makes belongs to nobody.

    Reached by impatient-clicks-slow-stripe. Violates no_orphan_session."""

    async def _stripe(self, call: Any) -> Any:
        try:
            return await super()._stripe(call)
        except OutcomeUnknown as exc:
            cause = exc.__cause__
            if isinstance(cause, stripe.APIError) and cause.http_status == 409:
                raise cause from None
            raise


class RefusesItsOwnCancel(ReferenceEngine):
    """Ends a cancelled purchase only from pending (the reference before issue 12): the expiry
    event its own expire call causes usually ends it first, as expired, and the customer is
    told "not cancellable" about a checkout that is closed.

    Reached by every CI scenario whose customers cancel. Violates cancel_answered_truly."""

    async def _end_cancelled(self, purchase_id: str) -> bool:
        return await self._end_pending(purchase_id, "cancelled")


class RefusesCancelOfExpired(ReferenceEngine):
    """Cancels only a pending purchase: when a double click's first cancel expired the session
    but never heard back (Stripe's answer lost), the expiry event has ended the purchase as
    expired before the second click runs, and the customer, told "outcome unknown" and then
    "not cancellable", believes the checkout still theirs to pay.

    Reached by double-cancel-lost-answer. Violates cancel_answered_truly."""

    def _cancellable(self, purchase: dict[str, Any]) -> bool:
        return purchase["status"] == "pending"


class TakesA500ForNothingDone(ReferenceEngine):
    """Believes a 500 from Stripe: the create it answered 500 made nothing. But Stripe executed
    it and keeps the 500 under its key; the session that create made expires naming a purchase
    that failed and never hears of it, so it belongs to nobody.

    Reached by stripe-500-after-execution. Violates no_orphan_session."""

    async def _adopt_expired_session(self, session: dict[str, Any]) -> None:
        return None


class ForgetsAnEarlyExpiry(ReferenceEngine):
    """Records the session an expiry names only on a purchase that has failed already: an
    expiry that comes while the create's outcome is still unknown is dropped, and when the
    sweep's replay then meets Stripe's stored 500 and fails the purchase, no event names that
    session again. It belongs to nobody.

    Reached by expiry-before-the-stored-500. Violates no_orphan_session."""

    async def _adopt_expired_session(self, session: dict[str, Any]) -> None:
        named = await self.purchases.find_one({"_id": _purchase_id(session)})
        if named is not None and named["status"] == FAILED:
            await super()._adopt_expired_session(session)


class WaitsForTheBounceEvent(ReferenceEngine):
    """Takes a session `complete` and `unpaid` for a bank debit still in flight, whatever its
    PaymentIntent says: when Stripe gave up on `checkout.session.async_payment_failed`, the
    bounced debit's purchase waits for ever, holding its seat.

    Reached by bounced-debit-event-lost. Violates no_stuck_purchase and counter_consistent."""

    async def _delayed_payment_failed(self, session: dict[str, Any]) -> bool:
        return False


class AsksOnlyAfterExpiry(ReferenceEngine):
    """Asks Stripe about a pending purchase's session only once it is past its `expires_at`:
    with every event given up, a customer whose bank debit cleared waits up to a day (the
    longest session) for access, and one whose debit bounced holds a seat as long.

    Reached by debit-settles-behind-a-long-session. Violates no_lost_payment,
    no_stuck_purchase and counter_consistent."""

    async def _recheck_live_sessions(self, now: float, horizon: float) -> None:
        return None


class SweepTripsOnAHeldLock(ReferenceEngine):
    """Lets a lock timeout escape the sweep: a session whose lock a stalled delivery holds
    ends the whole sweep with an exception, and the rest of its work waits for a pass that
    meets no stalled holder.

    Reached by sweep-meets-a-stalled-holder. Violates no_engine_exception."""

    sweep_skips = ()


class ForgetsOwedRefunds(ReferenceEngine):
    """Does not pay back a refund it decided but Stripe did not make (an outage): the event's
    retry finds the purchase refunded and changes nothing, so the money is kept.

    Reached by late-payment-noticed-twice. Violates no_lost_payment."""

    async def _honour_payment(self, purchase: dict[str, Any], session: dict[str, Any]) -> None:
        if purchase["status"] == REFUNDED:
            return None
        await super()._honour_payment(purchase, session)


class CancelsAnyonesPurchase(ReferenceEngine):
    """Looks the purchase to cancel up by its id alone: anyone who guesses an id (they are
    sequential) cancels another customer's checkout.

    Reached by misaddressed-events (the attacker's foreign cancels). Violates
    only_owner_cancels."""

    async def _users_purchase(self, user_id: str, purchase_id: str) -> dict[str, Any] | None:
        found: dict[str, Any] | None = await self.purchases.find_one({"_id": purchase_id})
        return found


class ReseatTakesASeatForEveryone(ReferenceEngine):
    """Takes a class-rep seat again for every late payment it re-seats, also for a purchase
    that never held one: the counter counts a seat nobody holds.

    Reached by late-payment-noticed-twice. Violates counter_consistent."""

    async def _reseat_or_refund(self, purchase: dict[str, Any], session: dict[str, Any]) -> None:
        await super()._reseat_or_refund({**purchase, "class_rep": True}, session)


class ReseatIgnoresItsTransition(ReferenceEngine):
    """Does not look at what the re-seat's transition answered: the notice that lost the race
    to re-seat a late payment fulfils it again.

    Reached by late-payment-noticed-twice. Violates no_double_completion."""

    async def _reseat_or_refund(self, purchase: dict[str, Any], session: dict[str, Any]) -> None:
        reseating = _RESEATING.set(True)
        try:
            await super()._reseat_or_refund(purchase, session)
        finally:
            _RESEATING.reset(reseating)

    async def _transition(
        self,
        purchase_id: str,
        old: str,
        new: str,
        fields: dict[str, Any],
        guard: dict[str, Any] | None = None,
    ) -> dict[str, Any] | None:
        won = await super()._transition(purchase_id, old, new, fields, guard)
        if won is None and new == COMPLETED and _RESEATING.get():
            latest = await self.purchases.find_one({"_id": purchase_id})
            return None if latest is None else {**latest, **fields}  # taken as won
        return won


class RefundsBeforeDeciding(ReferenceEngine):
    """Refunds a late payment first and only then tries to take the purchase to refunded (the
    reference before late-payment-noticed-twice found it): of two notices racing, one
    re-seats the payment while the other, finding the last seat taken, refunds it.

    Reached by late-payment-noticed-twice. Violates refund_justified (the customer keeps the
    program and the money)."""

    async def _refund(self, session: dict[str, Any], purchase: dict[str, Any]) -> None:
        await self._pay_back(session, purchase["_id"])
        await self._transition(purchase["_id"], purchase["status"], REFUNDED, {})


class ReclaimsWithoutTheSlot(ReferenceEngine):
    """Re-seats a late payment without pointing the user's slot at it: the slot still names
    the purchase the user bought and cancelled meanwhile, so when they come back and click Buy
    again they are sold the program a second time.

    Reached by come-back-after-buying. Violates no_double_charge."""

    async def _move_slot(self, slot_id: str, from_id: str, to_id: str) -> bool:
        return True


class FailsOnTheEventsWord(ReferenceEngine):
    """Ends a purchase on `checkout.session.async_payment_failed` whatever its object says,
    also when it has the session as paid.

    Reached by misaddressed-events. Violates payment_matches_purchase (an event that must not
    be honoured changed a purchase)."""

    async def _on_session_payment_failed(self, session: dict[str, Any]) -> None:
        await super()._on_session_payment_failed({**session, "payment_status": "unpaid"})


class ExpiresOnTheEventsWord(ReferenceEngine):
    """Ends a purchase on `checkout.session.expired` whatever its object says, also when the
    session is still open (its customer can still pay) or paid.

    Reached by misaddressed-events. Violates payment_matches_purchase."""

    async def _on_session_expired(self, session: dict[str, Any]) -> None:
        await super()._on_session_expired(
            {**session, "status": "expired", "payment_status": "unpaid"}
        )


class FailsTheNamedPurchase(ReferenceEngine):
    """Ends the purchase a failed session names (`client_reference_id`, metadata) when it is
    not that purchase's own session: a failure of a session made elsewhere ends someone's
    checkout.

    Reached by misaddressed-events. Violates payment_matches_purchase."""

    async def _on_session_payment_failed(self, session: dict[str, Any]) -> None:
        purchase = await self._purchase_for(session)  # its own, else the one it names
        if session.get("payment_status") != "paid" and purchase is not None:
            await self._end_pending(purchase["_id"], FAILED)


class RepairKeepsEndedPurchasesSeats(ReferenceEngine):
    """Reconcile gives back only the seats of purchases that were never written: a purchase
    that ended but whose seat release never ran (a crash between the two writes) keeps its
    seat for ever.

    Reached by crash-mid-release. Violates counter_consistent."""

    async def _release_unheld_seat(
        self, program_id: str, holder: dict[str, Any], purchase: dict[str, Any]
    ) -> None:
        return None


class _DropsStaleReleases(SeatLedger):
    async def _finish_release(self, program_id: str, key: str, move: dict[str, Any]) -> None:
        await self._programs.update_one({"_id": program_id}, {"$unset": {f"{MOVES}.{key}": ""}})


class StaleReleasesDropped(ReferenceEngine):
    """Reconcile finishes the seat moves a crash left half-done only when they were reserves; a
    release cut short is dropped: a hold released before the crash never moves the counter.

    Reached by crash-mid-release. Violates counter_consistent."""

    def __init__(self, env: EngineEnv) -> None:
        super().__init__(env)
        self.seats = _DropsStaleReleases(env.store, env.ids, env.clock)


class _AlwaysCloses(SeatLedger):
    async def _close_release(self, program_id: str, key: str, mine: bool) -> None:
        await super()._close_release(program_id, key, True)


class ReleaseCloseAlwaysDecrements(ReferenceEngine):
    """Moves the counter down at the end of every release, also of one whose hold another
    release had already given back: a seat given back twice.

    Reached by crash-mid-release. Violates counter_consistent."""

    def __init__(self, env: EngineEnv) -> None:
        super().__init__(env)
        self.seats = _AlwaysCloses(env.store, env.ids, env.clock)


@dataclass(frozen=True)
class Mutant:
    name: str
    factory: EngineFactory
    description: str
    violates: tuple[str, ...]


class ImpatientSweep(ReferenceEngine):
    """Lets `reconcile` wait for Stripe no longer than a request does: when Stripe is slower
    than the engine's timeout for good, no sweep ever learns which Checkout Session an intent
    whose outcome was unknown made, so its purchase waits, holding its seat, for ever.

    Reached by stripe-slower-than-timeouts. Violates no_stuck_purchase (and the leaked seat's
    counter_consistent; the refund its sweep never makes either: no_lost_payment)."""

    def __init__(self, env: EngineEnv) -> None:
        super().__init__(env)
        self.config = replace(self.config, reconcile_stripe_timeout=0.0)


class NoRefundSweep(ReferenceEngine):
    """Makes a decided refund only when the webhook that decided it is retried: when every
    retry times out (Stripe slower than the handler's timeout), the customer's money is kept.

    Reached by stripe-slower-than-timeouts. Violates no_lost_payment."""

    async def _retry_refunds(self) -> None:
        return None


class RefundKeyNeverRotates(ReferenceEngine):
    """Retries a refund with its first idempotency key for ever: when Stripe answered the first
    attempt 500, it replays that 500 to every retry for 24 h, and the customer is not paid back
    while the run (and Stripe's retries of the event) last.

    Reached by refund-after-a-stored-500. Violates no_lost_payment."""

    async def _pay_back(self, session: dict[str, Any], purchase_id: str) -> None:
        await self._stripe(
            self.env.stripe.v1.refunds.create_async(
                {"payment_intent": session["payment_intent"]},
                {"idempotency_key": f"refund:{session['id']}"},
            )
        )
        await self.purchases.update_one(
            {"_id": purchase_id, "refund_owed": session["id"]}, {"$unset": {"refund_owed": ""}}
        )


class ForgetsOwedReceipts(ReferenceEngine):
    """Sends a receipt only while completing: one the email provider refused (an outage) stays
    owed for ever, since no sweep retries it. The customer paid and was granted access but
    never hears so.

    Reached by email-outage and email-outage-backlog. Violates completion_delivered."""

    async def _retry_receipts(self) -> None:
        return None


class ForgetsOwedGrants(ReferenceEngine):
    """Grants access only on the path that completed the purchase, as most engines do: when the
    instance dies between the store's `completed` and the grant, no sweep grants it again. The
    customer paid, the purchase says so, and access never comes.

    Reached by crash-before-side-effect. Violates completion_delivered."""

    async def _retry_grants(self) -> None:
        return None


class ForgetsLegacyReleases(ReferenceEngine):
    """Asks Stripe only about its pending purchases' sessions: a purchase an earlier release
    cancelled without expiring the session is paid in the old tab, Stripe gives up on the
    event, and the payment is neither re-seated nor refunded.

    Reached by legacy-debit-behind-lost-events. Violates no_lost_payment."""

    async def _watch_legacy_releases(self, now: float) -> None:
        return None


class ReadsOnlyDeliveredEvents(ReferenceEngine):
    """Never lists the events Stripe could not deliver: a session made outside the engine and
    paid while the endpoint was down, Stripe giving up on its events, is neither refunded nor
    kept for a human (the engine never hears of it).

    Reached by foreign-payment-behind-lost-events. Violates no_lost_payment."""

    async def _replay_undelivered_events(self, now: float, horizon: float) -> None:
        return None


_REDIRECTED: ContextVar[bool] = ContextVar("mutant_redirected", default=False)


class RedirectLeavesTheGrant(ReferenceEngine):
    """Completes the purchase from the success page but leaves the grant to the webhook, as if
    the page only showed "paid", and settles the grant as done with the receipt: the webhook then
    finds the purchase completed and, as any duplicate, only sends the receipt still owed, and
    the sweep finds no grant owed. Whenever the customer's redirect wins the race, access is
    never granted.

    Reached where a redirect beats the webhook: rolling-deploy-memory-locks, lease-expiry-fenced,
    bank-debit-over-days. Violates completion_delivered."""

    async def handle_success_redirect(self, session_id: str) -> None:
        token = _REDIRECTED.set(True)
        try:
            await super().handle_success_redirect(session_id)
        finally:
            _REDIRECTED.reset(token)

    async def _fulfil(self, purchase: dict[str, Any]) -> None:
        if _REDIRECTED.get():
            await self._send_receipt(purchase, granted=True)
            return
        await super()._fulfil(purchase)


def _mutant(name: str, cls: type[ReferenceEngine], *violates: str) -> Mutant:
    summary = (inspect.getdoc(cls) or name).split("\n\n")[0].replace("\n", " ")
    return Mutant(name, cls, summary, violates)


MUTANTS: dict[str, Mutant] = {
    m.name: m
    for m in (
        _mutant("no-create-lock", NoCreateLock, "single_pending_per_user"),
        _mutant("check-then-act-counter", CheckThenActCounter, "no_limit_bypass"),
        _mutant("no-transition-guard", NoTransitionGuard, "no_double_completion"),
        _mutant(
            "release-on-payment-failed",
            ReleaseOnPaymentFailed,
            "no_limit_bypass",
            "counter_consistent",
        ),
        _mutant(
            "decrement-without-state-change", DecrementWithoutStateChange, "counter_consistent"
        ),
        _mutant("no-compensation", NoCompensation, "counter_consistent"),
        _mutant("ignore-expired", IgnoreExpired, "counter_consistent"),
        _mutant(
            "cancel-without-expire", CancelWithoutExpire, "no_limit_bypass", "counter_consistent"
        ),
        _mutant("fulfil-before-commit", FulfilBeforeCommit, "no_double_completion"),
        _mutant("event-recorded-first", EventRecordedFirst, "no_lost_payment"),
        _mutant("short-lock-timeout", ShortLockTimeout, "single_pending_per_user"),
        _mutant("no-signature-check", NoSignatureCheck, "signature_enforced"),
        _mutant("unpaid-fulfilment", UnpaidFulfilment, "no_unpaid_fulfilment"),
        _mutant("orphan-session", OrphanSession, "no_orphan_session"),
        _mutant("redis-no-fence", RedisNoFence, "single_pending_per_user"),
        _mutant("trusts-client-reference", TrustsClientReference, "payment_matches_purchase"),
        _mutant("skips-amount-check", SkipsAmountCheck, "payment_matches_purchase"),
        _mutant("skips-currency-check", SkipsCurrencyCheck, "payment_matches_purchase"),
        _mutant("skips-mode-check", SkipsModeCheck, "payment_matches_purchase"),
        _mutant("reparses-header", ReparsesHeader, "signature_enforced"),
        _mutant("no-shape-check", NoShapeCheck, "signature_enforced"),
        _mutant("unguarded-webhook", UnguardedWebhook, "no_engine_exception"),
        _mutant("retries-unfinishable", RetriesUnfinishable, "webhooks_acknowledged"),
        _mutant("refund-duplicate-notice", RefundDuplicateNotice, "refund_justified"),
        _mutant(
            "new-purchase-on-buy-again",
            NewPurchaseOnBuyAgain,
            "no_double_charge",
            "single_pending_per_user",
        ),
        _mutant("ignore-async-failure", IgnoreAsyncFailure, "no_stuck_purchase"),
        _mutant("reseat-without-slot-check", ReseatWithoutSlotCheck, "no_double_charge"),
        _mutant(
            "reseat-past-the-limit", ReseatPastTheLimit, "no_limit_bypass", "counter_consistent"
        ),
        _mutant("expire-ignoring-payment", ExpireIgnoringPayment, "refund_justified"),
        _mutant("no-program-check", NoProgramCheck, "no_engine_exception"),
        _mutant("takes-over-a-fresh-slot", TakesOverAFreshSlot, "single_pending_per_user"),
        _mutant("sells-what-they-own", SellsWhatTheyOwn, "no_double_charge"),
        _mutant("new-purchase-on-retry", NewPurchaseOnRetry, "single_pending_per_user"),
        _mutant(
            "slot-guard-only-for-class-rep", SlotGuardOnlyForClassRep, "single_pending_per_user"
        ),
        _mutant("key-in-use-is-a-refusal", KeyInUseIsARefusal, "no_orphan_session"),
        _mutant("cancels-anyones-purchase", CancelsAnyonesPurchase, "only_owner_cancels"),
        _mutant("refuses-its-own-cancel", RefusesItsOwnCancel, "cancel_answered_truly"),
        _mutant("refuses-cancel-of-expired", RefusesCancelOfExpired, "cancel_answered_truly"),
        _mutant("forgets-owed-refunds", ForgetsOwedRefunds, "no_lost_payment"),
        _mutant(
            "reseat-takes-a-seat-for-everyone", ReseatTakesASeatForEveryone, "counter_consistent"
        ),
        _mutant(
            "reseat-ignores-its-transition", ReseatIgnoresItsTransition, "no_double_completion"
        ),
        _mutant("refunds-before-deciding", RefundsBeforeDeciding, "refund_justified"),
        _mutant("reclaims-without-the-slot", ReclaimsWithoutTheSlot, "no_double_charge"),
        _mutant("fails-on-the-events-word", FailsOnTheEventsWord, "payment_matches_purchase"),
        _mutant("expires-on-the-events-word", ExpiresOnTheEventsWord, "payment_matches_purchase"),
        _mutant("fails-the-named-purchase", FailsTheNamedPurchase, "payment_matches_purchase"),
        _mutant(
            "repair-keeps-ended-purchases-seats",
            RepairKeepsEndedPurchasesSeats,
            "counter_consistent",
        ),
        _mutant("stale-releases-dropped", StaleReleasesDropped, "counter_consistent"),
        _mutant(
            "release-close-always-decrements", ReleaseCloseAlwaysDecrements, "counter_consistent"
        ),
        _mutant("impatient-sweep", ImpatientSweep, "no_stuck_purchase"),
        _mutant("no-refund-sweep", NoRefundSweep, "no_lost_payment"),
        _mutant("refund-key-never-rotates", RefundKeyNeverRotates, "no_lost_payment"),
        _mutant("buy-again-ignores-a-reseat", BuyAgainIgnoresAReseat, "no_double_charge"),
        _mutant("takes-a-500-for-nothing-done", TakesA500ForNothingDone, "no_orphan_session"),
        _mutant("forgets-an-early-expiry", ForgetsAnEarlyExpiry, "no_orphan_session"),
        _mutant("forgets-owed-receipts", ForgetsOwedReceipts, "completion_delivered"),
        _mutant("forgets-owed-grants", ForgetsOwedGrants, "completion_delivered"),
        _mutant("forgets-legacy-releases", ForgetsLegacyReleases, "no_lost_payment"),
        _mutant("reads-only-delivered-events", ReadsOnlyDeliveredEvents, "no_lost_payment"),
        _mutant("redirect-leaves-the-grant", RedirectLeavesTheGrant, "completion_delivered"),
        _mutant("sweep-trips-on-a-held-lock", SweepTripsOnAHeldLock, "no_engine_exception"),
        _mutant(
            "asks-only-after-expiry",
            AsksOnlyAfterExpiry,
            "no_lost_payment",
            "no_stuck_purchase",
            "counter_consistent",
        ),
        _mutant(
            "waits-for-the-bounce-event",
            WaitsForTheBounceEvent,
            "no_stuck_purchase",
            "counter_consistent",
        ),
    )
}


def register() -> None:
    """Make every mutant an engine named `mutant:{name}`. Idempotent."""
    for mutant in MUTANTS.values():
        key = f"mutant:{mutant.name}"
        EXTRA[key] = lambda factory=mutant.factory: factory
        EXTRA_DESCRIPTIONS[key] = mutant.description


register()
