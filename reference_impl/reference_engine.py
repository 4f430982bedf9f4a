"""The reference engine: the seed's design (keyed locks, atomic counter) made correct by construction.

Locks only reduce contention here; correctness never depends on them:
- every status change is a conditional transition (`{_id, status: old} -> new`), so exactly one
  of any number of concurrent deliveries, redirects, cancels or sweeps wins it;
- seats live in a ledger (`seats.py`): a conditional counter on the program document and one
  document per held seat; each move is recorded before it is made, so reconcile finishes what a
  crash left half-done; a seat is released only by whoever won the transition out of a
  seat-holding status;
- a slot document per (user, program), claimed by `_id`, allows one pending purchase per user
  even if two instances hold "the" lock at once; its writes are fenced with the purchase lock's
  token, so a holder that wakes after its lease expired cannot overwrite a newer holder's claim;
- the purchase is written before Stripe is called (intent record) and the Checkout Session is
  created with an idempotency key derived from the purchase id, so a timeout is resolved by
  replaying the same request, and `reconcile` resolves what no client came back for;
- a webhook is hostile until proven otherwise (README "Security"): one parser of the signature
  header (the SDK's), bounded JSON, every field shape-checked before use, and a paid session
  completes a purchase only if it is the one the engine issued for it, paid in full (amount,
  currency, mode). `handle_webhook` never raises (a handler error is a 500, nothing half
  written). Policy for a correctly signed paid session that can never complete a purchase (it
  names none, or one that did not issue it, or is not paid in full): acknowledged (200, not
  retried for three days), never completed, not refunded blindly (it is not a session this
  engine issued: every one of those has a purchase, written before Stripe is called), and kept
  in `webhook_dead_letters` for a human.

Each step is a method so that a mutant (a known-bad variant) can state only how it differs.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

import anyio
import stripe
from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from reference_impl.errors import (
    AlreadyPurchased,
    Busy,
    LimitReached,
    NotCancellable,
    NotFound,
    UpstreamError,
)
from reference_impl.locks import Lease, LockTimeout, LockUnavailable
from reference_impl.memory_locks import MemoryLockService
from reference_impl.ports import EmailError, EngineEnv, PurchaseResult
from reference_impl.redis_locks import RedisLockService
from reference_impl.schema import (
    CANCELLED,
    COMPLETED,
    EXPIRED,
    FAILED,
    PENDING,
    PROGRAMS,
    PURCHASES,
    REFUNDED,
    SEAT_HOLDING,
    SLOTS,
    SWEEP_MARKS,
    WEBHOOK_DEAD_LETTERS,
)
from reference_impl.seats import WITHOUT_SEAT_MOVES, SeatLedger
from reference_impl.webhook_shapes import checkout_session, event_object_of, session_id_or_none
from reference_impl.webhook_signature import (
    InvalidWebhook,
    event_envelope,
    event_page,
    verify_event,
)

#: a pending purchase whose session expires sooner than this gets a fresh session instead
REUSE_MARGIN_S = 60.0
#: statuses a paid session can still be honoured from, by taking a seat again
RELEASED = (CANCELLED, EXPIRED, FAILED)
#: `receipt` of a completed purchase whose receipt is not sent yet: written by the completing
#: transition, removed with the sending, so `reconcile` finds the few still owed by an index
#: lookup instead of reading every completed purchase at each sweep
RECEIPT_OWED = "owed"
#: owed receipts `reconcile` reads at a time
RECEIPT_PAGE = 100
#: `fulfilment` of a completed purchase whose grant may not have happened: written by the
#: completing transition with the grant's idempotency key (`grant_key`, fresh for each
#: completion, so that only the completion the store kept is granted again), removed once the
#: grant (and the receipt) went out. A crash between the two leaves it, and `reconcile` grants
#: again under the same key
FULFILMENT_OWED = "owed"
#: owed grants `reconcile` reads at a time
FULFILMENT_PAGE = 100
#: the purchase lock's lease held by the current request, for `_claim_slot`'s fence; a context
#: variable so that the slot seam (overridden by mutants) keeps its signature
_PURCHASE_LEASE: ContextVar[Lease | None] = ContextVar("purchase_lease", default=None)
#: the latest age at which `reconcile` replays a create whose outcome is unknown: well inside
#: the 24 h Stripe keeps an idempotency key's answer (after that a replay is a new request, and
#: one for a session past its `expires_at` is refused: the session it made would be no one's)
INTENT_REPLAY_WITHIN_S = 12 * 3600.0
#: how often `reconcile` asks Stripe about a pending purchase whose session is still live, once
#: it is that old: Stripe retries an event for hours before it gives up, so asking sooner would
#: mostly ask about abandoned tabs (and a session that lives under an hour is asked at expiry)
RECHECK_EVERY_S = 3600.0
#: `watch` of a cancelled purchase an earlier release left payable (it cancelled without
#: expiring the session): found once per instance by `_watch_legacy_releases`, asked about
#: hourly until Stripe says the session expired or the payment is dealt with
WATCH_LEGACY = "legacy"
#: what `_settle_session` says when nothing more can come of a session
SETTLED = ("expired", "paid", "failed")
#: the sweep mark (`_id` in `sweep_marks`) of `_replay_undelivered_events`: undelivered events
#: created before its `until` were read and handled
UNDELIVERED_MARK = "undelivered_events"
#: how far back Stripe lists events: where an engine that never looked starts
EVENT_RETENTION_S = 30 * 86400
#: undelivered events listed per request (Stripe allows 100; a backlog is read in small bites)
EVENTS_PAGE = 20
#: request options of a sweep's read that the next sweep makes again anyway
ONE_ATTEMPT: dict[str, Any] = {"max_network_retries": 0}
#: set while `reconcile` runs: its Stripe calls wait `reconcile_stripe_timeout`
_SWEEPING: ContextVar[bool] = ContextVar("sweeping", default=False)


class OutcomeUnknown(Exception):
    """The Stripe request may have landed: nothing may be released on its account."""


class ReferenceEngine:
    memory_lock_service = MemoryLockService
    intent_replay_within_s = INTENT_REPLAY_WITHIN_S
    #: what makes the sweep leave a purchase to its next pass instead of failing: the session's
    #: lock held past its timeout (a stalled delivery or success page)
    sweep_skips: tuple[type[Exception], ...] = (Busy,)

    def __init__(self, env: EngineEnv) -> None:
        self.env = env
        self.config = env.config
        self.purchases = env.store[PURCHASES]
        self.programs = env.store[PROGRAMS]
        self.slots = env.store[SLOTS]
        self.dead_letters = env.store[WEBHOOK_DEAD_LETTERS]
        self.sweep_marks = env.store[SWEEP_MARKS]
        self.seats = SeatLedger(env.store, env.ids, env.clock)
        # tokens of two in-process lock tables (two instances, a restart) are not comparable
        self.fence_scope = fence_scope_of(env.locks) or env.ids.new_id("fence")
        #: whether this instance has looked for legacy releases with a live session yet
        self._audited = False
        #: when this instance may next list Stripe's undelivered events (once per grace)
        self._next_listing_at = float("-inf")

    # ------------------------------------------------------------------ create

    async def create_purchase(
        self, user_id: str, program_id: str, class_rep: bool
    ) -> PurchaseResult:
        program = await self._program(program_id)
        try:
            async with self._lock(
                f"purchase:create:{user_id}:{program_id}", self.config.purchase_lock_timeout
            ) as lease:
                held = _PURCHASE_LEASE.set(lease)
                try:
                    return await self._create_locked(user_id, program, class_rep)
                finally:
                    _PURCHASE_LEASE.reset(held)
        except OutcomeUnknown as exc:  # e.g. settling a stale session: nothing was changed
            raise UpstreamError(f"Stripe outcome unknown: {exc}", outcome_known=False) from exc
        except stripe.StripeError as exc:
            raise UpstreamError(f"Stripe failed: {exc.user_message or exc}") from exc

    async def _program(self, program_id: str) -> dict[str, Any]:
        """The program on sale; a link to one that is not (withdrawn, mistyped) is NotFound."""
        program = await self.programs.find_one({"_id": program_id}, WITHOUT_SEAT_MOVES)
        if program is None:
            raise NotFound(f"program {program_id} not found")
        return program

    async def _create_locked(
        self, user_id: str, program: dict[str, Any], class_rep: bool
    ) -> PurchaseResult:
        slot_id = _slot_id(user_id, program["_id"])
        slot = await self.slots.find_one({"_id": slot_id})
        if slot is not None:
            current = await self.purchases.find_one({"_id": slot["purchase_id"]})
            if current is None and self._being_created(slot):
                raise Busy("a concurrent purchase is being created")
            if current is not None and self._owned(current):
                raise AlreadyPurchased(f"{user_id} already owns {program['_id']}")
            if current is not None and current["status"] == PENDING:
                reused = await self._reuse_pending(current)
                if reused is not None:
                    return reused
        return await self._start_purchase(user_id, program, class_rep, slot)

    def _being_created(self, slot: dict[str, Any]) -> bool:
        """A slot naming no purchase yet: another request claimed it and is writing its intent
        (or died doing so: after the grace, reconcile tombstones it and the slot is free)."""
        return bool(slot["at"] > self.env.clock.now() - self.config.reconcile_grace)

    def _owned(self, purchase: dict[str, Any]) -> bool:
        """The user's purchase of the program in the slot is paid for: Buy again is refused."""
        return bool(purchase["status"] == COMPLETED)

    async def _reuse_pending(self, purchase: dict[str, Any]) -> PurchaseResult | None:
        """An open pending purchase is returned as is (idempotent create); a stale one is ended."""
        if purchase.get("stripe_session_id") is None:
            return await self._open_session(purchase)  # resume an intent whose outcome was unknown
        if purchase["session_expires_at"] > self.env.clock.now() + REUSE_MARGIN_S:
            return _result(purchase, reused=True)
        session_id = purchase["stripe_session_id"]
        retrieve = self.env.stripe.v1.checkout.sessions.retrieve_async
        session = await self._stripe(retrieve(session_id))
        if session["status"] != "complete":
            if await self._expire_session(session_id):
                await self._end_pending(purchase["_id"], EXPIRED)
                return None
            # not expired: the customer paid in the old tab meanwhile, and a session the engine
            # never closed is honoured, not released (and refunded later)
            session = await self._stripe(retrieve(session_id))
            if session["status"] != "complete":  # pragma: no cover - expire refused an open session
                raise Busy("the old checkout could not be closed")
        await self._on_session_paid_or_pending(checkout_session(session))
        raise AlreadyPurchased(f"{purchase['_id']} was paid meanwhile")

    async def _start_purchase(
        self,
        user_id: str,
        program: dict[str, Any],
        class_rep: bool,
        slot: dict[str, Any] | None,
    ) -> PurchaseResult:
        """Seat, then slot, then intent record, then Stripe: each step undone if a later one loses."""
        now = self.env.clock.now()
        purchase_id = self.env.ids.new_id("pur")
        seat_ref = self.env.ids.new_id("seat") if class_rep else None
        if seat_ref and not await self.seats.reserve(
            program, purchase_id=purchase_id, ref=seat_ref, at=now
        ):
            raise LimitReached(f"class rep limit reached for {program['_id']}")
        if not await self._supersede(slot, purchase_id) or not await self._claim_slot(
            _slot_id(user_id, program["_id"]), slot, purchase_id, now
        ):
            if seat_ref:
                await self.seats.release(program["_id"], seat_ref)
            raise Busy("a concurrent purchase of this program is in progress")
        purchase = {
            "_id": purchase_id,
            "user_id": user_id,
            "program_id": program["_id"],
            "class_rep": class_rep,
            "status": PENDING,
            "seat_ref": seat_ref,
            "amount": program.get("price_cents", 5000),
            "stripe_session_id": None,
            "checkout_url": None,
            # fixed at intent time: a replay must send byte-identical parameters; read the clock
            # now, not before the seat and slot writes, so a stall there cannot push it too close
            "session_expires_at": int(self.env.clock.now() + self.config.session_ttl),
            "created_at": now,
        }
        try:
            await self.purchases.insert_one(purchase)
        except DuplicateKeyError:
            # reconcile tombstoned this id: we stalled past the grace and our seat is gone
            raise Busy("the purchase was abandoned while it stalled") from None
        return await self._open_session(purchase)

    async def _supersede(self, seen: dict[str, Any] | None, purchase_id: str) -> bool:
        """Mark the ended purchase the slot names as replaced by this one; False if a late
        payment of its old tab re-seated it since Buy again read it ended.

        Buy again decides from the old purchase's status and then swings the slot, and a
        re-seat changes that status without touching the slot: both write this one document,
        conditionally, so of a re-seat and a Buy again racing exactly one wins (a re-seat
        needs the purchase's `superseded_by` as it read it). A purchase in any other status is
        left to the slot's own checks."""
        if seen is None:
            return True
        await self.purchases.update_one(
            {"_id": seen["purchase_id"], "status": {"$in": list(RELEASED)}},
            {"$set": {"superseded_by": purchase_id}},
        )
        reseated = {"_id": seen["purchase_id"], "status": COMPLETED, "reseated": True}
        return await self.purchases.find_one(reseated, {"_id": 1}) is None

    async def _claim_slot(
        self, slot_id: str, seen: dict[str, Any] | None, purchase_id: str, now: float
    ) -> bool:
        """Point the user's slot for this program at the new purchase, if nobody moved it since.

        The slot (one document per user and program, keyed by `_id`) is what allows a single
        pending purchase per user even when two instances hold "the" lock at once: only one of
        them can insert it, or swing it from the purchase they both saw. The write carries the
        lease's fencing token and is refused once a newer token of the same scope has written:
        that also stops a stale holder whose slot was swung back to the purchase it saw (ABA).
        """
        lease = _PURCHASE_LEASE.get()
        fence = {} if lease is None else {"fence": lease.token, "fence_scope": self.fence_scope}
        if seen is None:
            try:
                await self.slots.insert_one(
                    {"_id": slot_id, "purchase_id": purchase_id, "at": now, **fence}
                )
            except DuplicateKeyError:
                return False
            return True
        # unless a newer holder (same token sequence) has written since. Never without a lease
        # from outside: `_claim_slot` runs only under create_purchase's lock, and every
        # LockService grants a Lease (reference_impl/locks.py); the test of `lease` is for a
        # subclass that calls it elsewhere (one expression: no branch for coverage to count)
        newer = (
            {}
            if lease is None
            else {"fence_scope": self.fence_scope, "fence": {"$gte": lease.token}}
        )
        unchanged: dict[str, Any] = {
            "_id": slot_id,
            "purchase_id": seen["purchase_id"],
            **({"$nor": [newer]} if newer else {}),
        }
        moved = await self.slots.update_one(
            unchanged,
            {"$set": {"purchase_id": purchase_id, "at": now, **fence}},
        )
        return moved.modified_count == 1

    async def _open_session(self, purchase: dict[str, Any]) -> PurchaseResult:
        try:
            session = await self._create_checkout_session(purchase)
        except OutcomeUnknown as exc:
            raise UpstreamError(f"Stripe outcome unknown: {exc}", outcome_known=False) from exc
        except stripe.StripeError as exc:
            await self._fail_create(purchase)
            raise UpstreamError(f"Stripe failed: {exc.user_message or exc}") from exc
        await self.purchases.update_one(
            {"_id": purchase["_id"], "status": PENDING, "stripe_session_id": None},
            {"$set": {"stripe_session_id": session["id"], "checkout_url": session["url"]}},
        )
        return PurchaseResult(purchase["_id"], session["id"], session["url"])

    async def _create_checkout_session(
        self, purchase: dict[str, Any], *, patient: bool = False
    ) -> Any:
        """Create (or replay, same key and parameters) the purchase's Checkout Session.

        Only a refusal that no earlier attempt can have overtaken is definite: a 429 or 5xx that
        follows a timeout or lost response may hide a session that exists, so it is reported as
        OutcomeUnknown. `patient` (reconcile) treats every 429/5xx that way.
        """
        params: dict[str, Any] = {
            "mode": "payment",
            "client_reference_id": purchase["_id"],
            "expires_at": purchase["session_expires_at"],
            "success_url": self.config.success_url,
            "cancel_url": self.config.cancel_url,
            "metadata": {"purchase_id": purchase["_id"], "user_id": purchase["user_id"]},
            "payment_intent_data": {"metadata": {"purchase_id": purchase["_id"]}},
            "line_items": [
                {
                    "quantity": 1,
                    "price_data": {
                        "currency": self.config.currency,
                        "unit_amount": purchase["amount"],
                        "product_data": {"name": f"Program {purchase['program_id']}"},
                    },
                }
            ],
        }
        options: dict[str, Any] = {
            "idempotency_key": f"checkout-session:{purchase['_id']}",
            "max_network_retries": 0,  # retried below, where we know what may have landed
        }
        may_have_landed = patient or bool(purchase.get("create_may_have_landed"))
        for attempt in range(self.config.stripe_retries + 1):
            last = attempt == self.config.stripe_retries
            try:
                return await self._stripe(
                    self.env.stripe.v1.checkout.sessions.create_async(params, options)
                )
            except OutcomeUnknown:
                if not may_have_landed:
                    may_have_landed = True
                    await self.purchases.update_one(
                        {"_id": purchase["_id"]}, {"$set": {"create_may_have_landed": True}}
                    )
                if last:
                    raise
            except (stripe.RateLimitError, stripe.APIError) as exc:
                if _replayed(exc):
                    raise  # Stripe's stored answer to this key's first execution: definite
                # this attempt was refused, but an earlier one with the same key may have landed
                if last:
                    if may_have_landed:
                        raise OutcomeUnknown(
                            f"{exc} after an attempt that may have landed"
                        ) from exc
                    raise
            await anyio.sleep(0.5 * 2**attempt)
        # the last attempt returns or raises on every path above: the loop never runs out
        raise AssertionError("unreachable")  # pragma: no cover

    async def _stripe(self, call: Any) -> Any:
        """Await a Stripe call within the configured timeout; map "may have landed" to OutcomeUnknown."""
        timeout = self.config.stripe_timeout
        if _SWEEPING.get():
            timeout = max(timeout, self.config.reconcile_stripe_timeout)
        try:
            with anyio.fail_after(timeout):
                return stripe_json(await call)
        except TimeoutError as exc:
            raise OutcomeUnknown(f"no answer within {timeout:g}s") from exc
        except stripe.APIConnectionError as exc:
            raise OutcomeUnknown(str(exc)) from exc
        except stripe.APIError as exc:
            if exc.http_status == 409:  # the same idempotency key is still in flight
                raise OutcomeUnknown(str(exc)) from exc
            raise

    # ------------------------------------------------------------------ cancel

    async def cancel_purchase(self, user_id: str, purchase_id: str) -> None:
        purchase = await self._users_purchase(user_id, purchase_id)
        if purchase is None:  # ids are guessable: someone else's purchase is not found either
            raise NotFound(f"purchase {purchase_id} not found")
        key = f"purchase:create:{user_id}:{purchase['program_id']}"
        async with self._lock(key, self.config.purchase_lock_timeout):
            purchase = await self.purchases.find_one({"_id": purchase_id})
            if purchase is None or not self._cancellable(purchase):
                raise NotCancellable(f"purchase {purchase_id} is not pending")
            session_id = purchase.get("stripe_session_id")
            try:
                # an intent whose create's answer was lost: the replayed create names its
                # session, so that it is expired too. (No CI scenario reaches it: the reference
                # hands out a purchase id only with its session; an account page listing
                # pending purchases, or an earlier release, would.)
                if session_id is None:
                    session_id = (await self._create_checkout_session(purchase))["id"]
                # expire first, so nobody can pay in an open tab after the cancel
                if not await self._cancel_session(session_id):
                    raise NotCancellable(f"purchase {purchase_id} is already paid")
            except OutcomeUnknown as exc:
                raise UpstreamError(str(exc), outcome_known=False) from exc
            except stripe.StripeError as exc:
                raise UpstreamError(f"Stripe failed: {exc.user_message or exc}") from exc
            cancelled = await self._end_cancelled(purchase_id)
        if not cancelled:  # another cancel, on another instance, won
            raise NotCancellable(f"purchase {purchase_id} changed meanwhile")

    def _cancellable(self, purchase: dict[str, Any]) -> bool:
        """Pending, or expired: the `checkout.session.expired` event of an expiry this
        customer's other click asked for may have ended it before this click ran, and that
        click may never have heard back (Stripe's answer lost, its instance crashed). Answering
        "not cancellable" would tell the customer the checkout is still theirs to pay; this
        cancel closes the session as any does (a session paid meanwhile is refused below) and
        records the end the customer asked for."""
        return purchase["status"] in (PENDING, EXPIRED)

    async def _end_cancelled(self, purchase_id: str) -> bool:
        """`pending -> cancelled`, once its session is unpayable. The `checkout.session.expired`
        event our own expiry caused (or a sweep) may have ended it first, as expired: the seat
        is back, which is what the customer asked for, so that is this cancel, recorded so."""
        closed = {"session_closed": True}  # expired at Stripe first: nothing to watch
        return await self._end_pending(purchase_id, CANCELLED, closed) or (
            await self._transition(purchase_id, EXPIRED, CANCELLED, closed) is not None
        )

    async def _users_purchase(self, user_id: str, purchase_id: str) -> dict[str, Any] | None:
        return await self.purchases.find_one({"_id": purchase_id, "user_id": user_id})

    async def _cancel_session(self, session_id: str) -> bool:
        """Cancel's step at Stripe: the session must be unpayable before the seat is given back."""
        return await self._expire_session(session_id)

    async def _expire_session(self, session_id: str) -> bool:
        """Make the session unpayable. False when the customer already completed it."""
        sessions = self.env.stripe.v1.checkout.sessions
        try:
            await self._stripe(sessions.expire_async(session_id))
            return True
        except stripe.InvalidRequestError:
            session = await self._stripe(sessions.retrieve_async(session_id))
            return session["status"] == "expired"

    # ------------------------------------------------------------------ webhooks

    async def handle_webhook(self, payload: bytes, signature_header: str | None) -> int:
        """Never raises: 400 for anything not a well-formed event signed by Stripe, 500 (Stripe
        retries) for a handler error, which leaves the purchase as it was: every change is one
        conditional update made after all checks."""
        try:
            event = self._verified_event(payload, signature_header)
            return await self._dispatch(event)
        except InvalidWebhook:
            return 400
        except Exception as exc:  # a handler bug must not become the web server's problem
            return self._on_handler_error(exc)

    def _on_handler_error(self, exc: Exception) -> int:
        return 500

    def _verified_event(self, payload: bytes, signature_header: str | None) -> dict[str, Any]:
        return verify_event(
            payload,
            signature_header,
            self.env.webhook_secret,
            clock=self.env.clock,
            tolerance=self.config.webhook_tolerance,
        )

    def _webhook_session(self, event: dict[str, Any]) -> dict[str, Any]:
        """The event's object (a Checkout Session), every field the engine reads of its expected
        shape, in a fresh dict: the raw body is never read again."""
        return event_object_of(event)

    async def _dispatch(self, event: dict[str, Any]) -> int:
        handler = self._webhook_handlers().get(event["type"])
        if handler is None:
            return 200  # unknown or deliberately ignored types change nothing
        session = self._webhook_session(event)  # InvalidWebhook: 400
        try:
            async with self._lock(
                f"webhook:session:{session['id']}", self.config.webhook_lock_timeout
            ):
                await handler(session)
        except Busy:
            return 503
        except (OutcomeUnknown, stripe.StripeError):
            return 500  # Stripe retries; every transition is safe to repeat
        return 200

    def _webhook_handlers(self) -> dict[str, Any]:
        # payment_intent.payment_failed is deliberately absent: the customer may retry the card
        # within the same session, so a decline releases nothing.
        return {
            "checkout.session.completed": self._on_session_paid_or_pending,
            "checkout.session.async_payment_succeeded": self._on_session_paid_or_pending,
            "checkout.session.async_payment_failed": self._on_session_payment_failed,
            "checkout.session.expired": self._on_session_expired,
        }

    async def handle_success_redirect(self, session_id: str) -> None:
        """The success page: fulfil from a retrieved session, racing the webhook safely.

        If Stripe cannot be asked right now the page just shows "processing": the webhook (or
        reconcile) completes the purchase, so a failure here is never an error. The session id
        comes from the customer's query string: it is checked like a webhook's.
        """
        if session_id_or_none(session_id) is None:
            return
        try:
            session = await self._stripe(
                self.env.stripe.v1.checkout.sessions.retrieve_async(session_id)
            )
            async with self._lock(
                f"webhook:session:{session_id}", self.config.webhook_lock_timeout
            ):
                await self._on_session_paid_or_pending(checkout_session(session))
        except (OutcomeUnknown, stripe.StripeError, Busy, InvalidWebhook):
            return

    async def _on_session_paid_or_pending(self, session: dict[str, Any]) -> None:
        """Complete the purchase this paid session was issued for; anything else goes to a human.

        A session completes a purchase only if it is the one the engine created for it (its
        stored `stripe_session_id`), paid in full: the purchase's amount, currency and the
        engine's mode. A paid session that fails any check is acknowledged and kept in
        `webhook_dead_letters`: never completed, and not refunded blindly (see `_dead_letter`).
        """
        if session.get("payment_status") not in ("paid", "no_payment_required"):
            return  # an async method: wait for checkout.session.async_payment_succeeded
        purchase = await self._purchase_for(session)
        if purchase is None:
            await self._dead_letter(session, "paid session names no purchase of this engine")
            return
        problem = await self._payment_problem(purchase, session)
        if problem is not None:
            await self._dead_letter(session, problem, purchase["_id"])
            return
        await self._honour_payment(purchase, session)

    async def _payment_problem(
        self, purchase: dict[str, Any], session: dict[str, Any]
    ) -> str | None:
        """Why `session` may not complete `purchase`, or None. Cheap checks first: a foreign
        session that is also underpaid costs no Stripe call."""
        for check in (self._wrong_amount, self._wrong_currency, self._wrong_mode):
            problem = check(purchase, session)
            if problem is not None:
                return problem
        return await self._foreign_session(purchase, session)

    def _wrong_amount(self, purchase: dict[str, Any], session: dict[str, Any]) -> str | None:
        if session.get("payment_intent") is None:
            return "paid session without a PaymentIntent"
        if session.get("amount_total") != purchase.get("amount"):
            return f"amount {session.get('amount_total')} is not the purchase's {purchase.get('amount')}"
        return None

    def _wrong_currency(self, purchase: dict[str, Any], session: dict[str, Any]) -> str | None:
        expected = purchase.get("currency", self.config.currency)
        if session.get("currency") != expected:
            return f"currency {session.get('currency')} is not the purchase's {expected}"
        return None

    def _wrong_mode(self, purchase: dict[str, Any], session: dict[str, Any]) -> str | None:
        if session.get("mode") != "payment":
            return f"mode {session.get('mode')} is not payment"
        return None

    async def _foreign_session(
        self, purchase: dict[str, Any], session: dict[str, Any]
    ) -> str | None:
        """None when `session` is the one the engine created for `purchase`.

        A purchase whose create answer was lost has no session id yet: the create is replayed
        (same idempotency key and parameters), and Stripe's answer says which session is ours.
        A session that answer does not name is someone else's, whatever it claims.
        """
        stored = purchase.get("stripe_session_id")
        # (a paid session naming an intent: no customer holds the URL of a session whose create
        # answer was lost, so only someone else's session that guessed the id gets here; the CI
        # attacker names its own purchases, which all have their sessions)
        if stored is None and purchase["status"] == PENDING:
            try:
                issued = await self._create_checkout_session(purchase, patient=True)
            except stripe.StripeError:
                issued = None  # Stripe refused our create for good: no session is ours
            if issued is not None:
                await self.purchases.update_one(
                    {"_id": purchase["_id"], "stripe_session_id": None},
                    {"$set": {"stripe_session_id": issued["id"], "checkout_url": issued["url"]}},
                )
                stored = issued["id"]
        if stored == session["id"]:
            return None
        return f"session {session['id']} is not {stored}, the one issued for {purchase['_id']}"

    async def _dead_letter(
        self, session: dict[str, Any], reason: str, purchase_id: str | None = None
    ) -> None:
        """Keep a paid session that can never complete a purchase, for a human; acknowledge it.

        Policy (a correctly signed, paid completion the engine cannot honour, e.g. for a purchase
        that does not exist or from a session it never issued): not retried for three days (it
        can never succeed) and not refunded. A session the engine issued always has a purchase
        (the intent record is written before Stripe is called), so this is someone else's
        money: a Payment Link, the dashboard, other code on the account. Refunding it blindly
        would undo a sale the engine knows nothing about; a human decides. One document per
        session, written once.
        """
        try:
            await self.dead_letters.insert_one(
                {
                    "_id": session["id"],
                    "session_id": session["id"],
                    "payment_intent": session.get("payment_intent"),
                    "purchase_id": purchase_id or _purchase_id(session),
                    "amount_total": session.get("amount_total"),
                    "currency": session.get("currency"),
                    "mode": session.get("mode"),
                    "reason": reason,
                    "at": self.env.clock.now(),
                }
            )
        except DuplicateKeyError:
            return

    async def _honour_payment(self, purchase: dict[str, Any], session: dict[str, Any]) -> None:
        if purchase["status"] == PENDING:
            won = await self._transition(
                purchase["_id"],
                PENDING,
                COMPLETED,
                self._paid_fields(session),
                {"stripe_session_id": session["id"]},
            )
            if won is not None:
                await self._fulfil(won)
                return
            purchase = await self.purchases.find_one({"_id": purchase["_id"]}) or purchase
        if purchase["status"] == COMPLETED:
            await self._send_receipt(purchase)  # a duplicate: only a receipt still owed is sent
            return
        if purchase["status"] == REFUNDED and purchase.get("refund_owed") == session["id"]:
            await self._pay_back(session, purchase["_id"])  # decided, not yet made at Stripe
            return
        if purchase["status"] in RELEASED:
            await self._reseat_or_refund(purchase, session)

    async def _reseat_or_refund(self, purchase: dict[str, Any], session: dict[str, Any]) -> None:
        """Paid after cancel/expiry: honour it if a seat is free, otherwise refund. Never lost."""
        if not await self._may_reclaim_slot(purchase):
            await self._refund(session, purchase)  # the user has bought the program again since
            return
        fields = {**self._paid_fields(session), "reseated": True}
        seat_ref = None
        if purchase["class_rep"]:
            seat_ref = self.env.ids.new_id("seat")
            program = await self.programs.find_one(
                {"_id": purchase["program_id"]}, WITHOUT_SEAT_MOVES
            )
            assert program is not None
            if not await self.seats.reserve(
                program, purchase_id=purchase["_id"], ref=seat_ref, at=self.env.clock.now()
            ):
                await self._refund(session, purchase)
                return
            fields["seat_ref"] = seat_ref
        # a ref that reconcile burned (we stalled past the grace) may not be adopted, nor a
        # purchase a Buy again superseded meanwhile (`_supersede`)
        guard: dict[str, Any] = {
            "stripe_session_id": session["id"],
            "superseded_by": purchase.get("superseded_by"),
        }
        if seat_ref:
            guard["burned_seat_refs"] = {"$ne": seat_ref}
        won = await self._transition(purchase["_id"], purchase["status"], COMPLETED, fields, guard)
        if won is not None:
            await self._fulfil(won)
            return
        if seat_ref:  # lost the race: our reservation is ours alone to give back
            await self.seats.release(purchase["program_id"], seat_ref)
        # still released only if the guard refused it: a Buy again superseded the purchase, or
        # reconcile burned our seat ref while this re-seat stalled past the grace (no CI
        # scenario stalls a re-seat that long)
        latest = await self.purchases.find_one({"_id": purchase["_id"]})
        if latest is not None and latest["status"] != purchase["status"]:
            await self._honour_payment(latest, session)
        elif latest is not None and latest.get("superseded_by") != purchase.get("superseded_by"):
            await self._reseat_or_refund(latest, session)  # Buy again meanwhile: decide anew

    async def _may_reclaim_slot(self, purchase: dict[str, Any]) -> bool:
        """A late payment is honoured only if the user holds no other live purchase of the program:
        not the one that superseded it (nor one still being written), nor the slot's."""
        successor = purchase.get("superseded_by")
        if successor is not None:
            other = await self.purchases.find_one({"_id": successor})
            if other is None or other["status"] in SEAT_HOLDING:
                return False
        slot_id = _slot_id(purchase["user_id"], purchase["program_id"])
        slot = await self.slots.find_one({"_id": slot_id})
        if slot is None or slot["purchase_id"] == purchase["_id"]:
            return True
        other = await self.purchases.find_one({"_id": slot["purchase_id"]})
        if other is not None and other["status"] in SEAT_HOLDING:
            return False
        # the purchase the site knows the user by is this one now: Buy again sees it
        return await self._move_slot(slot_id, slot["purchase_id"], purchase["_id"])

    async def _move_slot(self, slot_id: str, from_id: str, to_id: str) -> bool:
        moved = await self.slots.update_one(
            {"_id": slot_id, "purchase_id": from_id},
            {"$set": {"purchase_id": to_id, "at": self.env.clock.now()}},
        )
        return moved.modified_count == 1

    async def _refund(self, session: dict[str, Any], purchase: dict[str, Any]) -> None:
        """Give a late payment of `purchase` back (a session with no purchase of ours is never
        refunded: see `_dead_letter`).

        Decided by the same conditional transition out of the released status that a re-seat
        of the payment needs, before any money moves: of two notices racing (two instances,
        the success page), one re-seats or one refunds, never both (the customer would keep the
        program and the money). The refund stays owed until Stripe made it: a retry of the
        event, whose handler answered 500, makes it then."""
        won = await self._transition(
            purchase["_id"], purchase["status"], REFUNDED, {"refund_owed": session["id"]}
        )
        if won is not None:
            await self._pay_back(session, purchase["_id"])
            return
        # the transition has no guard: losing it means the other notice moved the purchase on
        # (re-seated it, or decided the refund); None only for a purchase deleted by hand
        latest = await self.purchases.find_one({"_id": purchase["_id"]})
        if latest is not None:
            await self._honour_payment(latest, session)

    async def _pay_back(self, session: dict[str, Any], purchase_id: str) -> None:
        """Refund the session's payment in full, then mark the refund made.

        Stripe keeps a request's first answer for its idempotency key for 24 h, a 500 too: a
        refund whose first attempt Stripe answered 500 would be answered 500 again for a day.
        So after a replayed error the next attempt takes a fresh key (`refund_attempt`). That
        cannot refund twice: a full refund of a payment already refunded is refused as
        `charge_already_refunded`, which means the refund is made."""
        purchase = await self.purchases.find_one({"_id": purchase_id}) or {}
        attempt = purchase.get("refund_attempt", 0)
        key = f"refund:{session['id']}" + (f":{attempt}" if attempt else "")
        try:
            await self._stripe(
                self.env.stripe.v1.refunds.create_async(
                    {"payment_intent": session["payment_intent"]}, {"idempotency_key": key}
                )
            )
        except stripe.InvalidRequestError as exc:  # pragma: no cover - Stripe's 500 may come
            # after the refund was made; the fake's injected 500s never execute the request
            if exc.code != "charge_already_refunded":
                raise
        except stripe.APIError as exc:
            if _replayed(exc):  # Stripe's stored 500 for this key: the next try takes another
                await self.purchases.update_one(
                    {"_id": purchase_id, "refund_owed": session["id"]},
                    {"$set": {"refund_attempt": attempt + 1}},
                )
            raise
        await self.purchases.update_one(
            {"_id": purchase_id, "refund_owed": session["id"]}, {"$unset": {"refund_owed": ""}}
        )

    async def _on_session_payment_failed(self, session: dict[str, Any]) -> None:
        if session.get("payment_status") == "paid":
            return  # the event contradicts its own object: end nothing on its word
        purchase = await self._purchase_of_session(session["id"])
        if purchase is not None:
            await self._end_pending(purchase["_id"], FAILED)

    async def _on_session_expired(self, session: dict[str, Any]) -> None:
        # a purchase whose create's answer was lost learns its session from the replayed
        # create; an expiry merely naming it proves nothing, unless it has the create's own
        # terms (`_adopt_expired_session`)
        if session.get("status") != "expired" or session.get("payment_status") == "paid":
            return  # the event contradicts its own object: end nothing on its word
        purchase = await self._purchase_of_session(session["id"])
        if purchase is not None:
            await self._end_pending(purchase["_id"], EXPIRED)
        else:
            await self._adopt_expired_session(session)

    async def _adopt_expired_session(self, session: dict[str, Any]) -> None:
        """A create Stripe answered with a 500 may have made its session all the same (a 500
        promises nothing, and Stripe replays it to every retry with the key). The purchase
        failed and gave its seat back, which is safe: nobody saw that session's URL, so nobody
        can pay it. When its expiry names the purchase, it is recorded there, so that every
        session Stripe made has its purchase: only on a failed purchase with no session, and
        only a session with the create's own terms (amount, `expires_at`).

        The expiry may come first, while the create's outcome is still unknown (its retry was
        lost too, or Stripe is out of reach) and the purchase waits for the sweep. A session
        with the create's own terms has the purchase's own `expires_at`, so whichever session
        the create made has expired with it: the purchase expires, that session recorded."""
        terms = {
            "stripe_session_id": None,
            "amount": session["amount_total"],
            # a number equal to the session's: an odd `expires_at` (None) matches nothing
            "session_expires_at": {"$type": "number", "$eq": session["expires_at"]},
        }
        named = _purchase_id(session)  # None, a session naming nothing: matches nothing
        fields = {"ended_at": self.env.clock.now(), "stripe_session_id": session["id"]}
        if await self._transition(named, PENDING, EXPIRED, fields, terms) is None:
            await self.purchases.update_one(
                {"_id": named, **terms, "status": FAILED},
                {"$set": {"stripe_session_id": session["id"]}},
            )

    async def _purchase_of_session(self, session_id: str) -> dict[str, Any] | None:
        return await self.purchases.find_one({"stripe_session_id": session_id})

    async def _purchase_for(self, session: dict[str, Any]) -> dict[str, Any] | None:
        """The purchase that issued `session`, else the one it names (to be checked)."""
        own = await self._purchase_of_session(session["id"])
        if own is not None:
            return own
        purchase_id = _purchase_id(session)
        if purchase_id:
            return await self.purchases.find_one({"_id": purchase_id})
        return None

    # ------------------------------------------------------------------ side effects

    def _paid_fields(self, session: dict[str, Any]) -> dict[str, Any]:
        """What the transition into `completed` writes: the grant and the receipt are owed
        from then on, the grant under a key of this completion's own."""
        return {
            "stripe_session_id": session["id"],
            "stripe_payment_intent_id": session.get("payment_intent"),
            "fulfilment": FULFILMENT_OWED,
            "grant_key": self.env.ids.new_id("grant"),
            "receipt": RECEIPT_OWED,
        }

    async def _fulfil(self, purchase: dict[str, Any]) -> None:
        """Called by the winner of the transition into `completed`, and by `reconcile` for a
        grant still owed after a crash: the provider grants once per key, so at most once."""
        await self.env.fulfilment.grant(
            purchase_id=purchase["_id"],
            user_id=purchase["user_id"],
            program_id=purchase["program_id"],
            session_id=purchase["stripe_session_id"],
            idempotency_key=purchase["grant_key"],
        )
        # the receipt's write also settles the grant; without one, the grant settles alone
        if purchase.get("receipt_sent") or not await self._send_receipt(purchase, granted=True):
            await self.purchases.update_one(
                {"_id": purchase["_id"]}, {"$unset": {"fulfilment": ""}}
            )

    async def _send_receipt(self, purchase: dict[str, Any], granted: bool = False) -> bool:
        """The provider delivers once per key; a failure is retried by `reconcile`, never by
        Stripe. False when the provider failed. `granted`: the write settles the grant too."""
        if purchase.get("receipt_sent"):
            return True
        try:
            await self.env.email.send_receipt(
                purchase_id=purchase["_id"],
                user_id=purchase["user_id"],
                idempotency_key=f"receipt:{purchase['_id']}",
            )
        except EmailError:
            return False
        settled = {"receipt": "", "fulfilment": ""} if granted else {"receipt": ""}
        await self.purchases.update_one(
            {"_id": purchase["_id"]}, {"$set": {"receipt_sent": True}, "$unset": settled}
        )
        return True

    # ------------------------------------------------------------------ transitions

    async def _transition(
        self,
        purchase_id: str,
        old: str,
        new: str,
        fields: dict[str, Any],
        guard: dict[str, Any] | None = None,
    ) -> dict[str, Any] | None:
        """`old -> new` if the purchase is still `old`; returns the new document to the one winner.

        Leaving a seat-holding status releases the seat the purchase held, exactly once.
        """
        update: dict[str, Any] = {"$set": {"status": new, **fields}}
        before = await self.purchases.find_one_and_update(
            {"_id": purchase_id, "status": old, **(guard or {})},
            update,
            return_document=ReturnDocument.BEFORE,
        )
        if before is None:
            return None
        if old in SEAT_HOLDING and new not in SEAT_HOLDING and before.get("seat_ref"):
            await self.seats.release(before["program_id"], before["seat_ref"])
        return {**before, "status": new, **fields}

    async def _fail_create(self, purchase: dict[str, Any]) -> bool:
        """Stripe definitely refused the Checkout Session: give the seat back, exactly once."""
        return await self._end_pending(purchase["_id"], FAILED)

    async def _end_pending(
        self, purchase_id: str, new: str, extra: dict[str, Any] | None = None
    ) -> bool:
        """`pending -> new`; True for the one caller that made it. (A purchase whose create's
        answer was lost learns its session from the replayed create, never from an event that
        merely names it: `_foreign_session`, `_resolve_intents`; an expiry with the create's
        own terms is the one exception, `_adopt_expired_session`.)"""
        fields: dict[str, Any] = {"ended_at": self.env.clock.now(), **(extra or {})}
        return await self._transition(purchase_id, PENDING, new, fields) is not None

    # ------------------------------------------------------------------ reconcile

    async def reconcile(self) -> None:
        """Resolve what no client or webhook came back for. Safe to run anywhere, any time."""
        now = self.env.clock.now()
        horizon = now - self.config.reconcile_grace
        sweeping = _SWEEPING.set(True)
        try:
            # an intent is resolved by replaying its create with the same idempotency key,
            # which Stripe answers from memory for 24 h only: never later, whatever the grace
            await self._resolve_intents(max(horizon, now - self.intent_replay_within_s))
            await self._resolve_expired_sessions(now)
            await self._recheck_live_sessions(now, horizon)
            await self._watch_legacy_releases(now)
            await self._replay_undelivered_events(now, horizon)
            await self._repair_seat_ledger(horizon)
            await self._retry_grants()
            await self._retry_receipts()
            await self._retry_refunds()
        finally:
            _SWEEPING.reset(sweeping)

    async def _resolve_intents(self, horizon: float) -> None:
        stuck = await self.purchases.find(
            {"status": PENDING, "stripe_session_id": None, "created_at": {"$lt": horizon}}
        ).to_list()
        for purchase in stuck:
            try:
                # replay, same key and parameters: Stripe answers what happened the first time
                session = await self._create_checkout_session(purchase, patient=True)
            except OutcomeUnknown:
                continue
            except stripe.StripeError:
                await self._fail_create(purchase)
                continue
            # no client ever received this session's URL: close it
            await self.purchases.update_one(
                {"_id": purchase["_id"], "stripe_session_id": None},
                {"$set": {"stripe_session_id": session["id"], "checkout_url": session["url"]}},
            )
            await self._settle_session(purchase["_id"], session["id"], expire=True)

    async def _resolve_expired_sessions(self, now: float) -> None:
        overdue = await self.purchases.find(
            {
                "status": PENDING,
                "stripe_session_id": {"$ne": None},
                "session_expires_at": {"$lt": now},
            }
        ).to_list()
        for purchase in overdue:
            await self._settle_session(purchase["_id"], purchase["stripe_session_id"], expire=False)

    async def _recheck_live_sessions(self, now: float, horizon: float) -> None:
        """Ask Stripe about pending purchases whose session is not due to expire yet. The
        customer may have paid, or their bank debit settled or bounced, with every event that
        said so given up (an endpoint down for hours: test mode gives up within hours, live
        mode after 3 days), and a session may live 24 h: a paid customer waiting that long for
        access, a bounced one holding a seat. Each is asked every RECHECK_EVERY_S once it is
        that old: an abandoned tab costs one retrieve an hour, not one a sweep."""
        live = await self.purchases.find(
            {
                "status": PENDING,
                "stripe_session_id": {"$ne": None},
                "session_expires_at": {"$gte": now},
                "created_at": {"$lt": min(horizon, now - RECHECK_EVERY_S)},
            }
        ).to_list()
        for purchase in live:
            if purchase.get("recheck_at", now) > now:
                continue
            await self._settle_session(purchase["_id"], purchase["stripe_session_id"], expire=False)
            await self.purchases.update_one(
                {"_id": purchase["_id"], "status": PENDING},
                {"$set": {"recheck_at": now + RECHECK_EVERY_S}},
            )

    async def _watch_legacy_releases(self, now: float) -> None:
        """A store an earlier release wrote may hold purchases it cancelled without expiring
        their sessions (as the seed does): their tabs stay payable for up to 24 h, and a
        payment in one is honoured or refunded only if its event arrives. Stripe may give up on
        it, so each such purchase is asked about hourly until its session expired or the
        payment is dealt with. Found once per instance (one read of the cancelled purchases
        with a live session); then only the watched ones are read, by an index lookup."""
        if not self._audited:
            # a read, then a write for each one found: an update_many would write (nothing)
            # at every instance's first sweep, in every store
            found = await self.purchases.find(
                {
                    "status": CANCELLED,
                    "session_closed": {"$ne": True},
                    "stripe_session_id": {"$ne": None},
                    "session_expires_at": {"$gte": now},
                    "watch": {"$ne": WATCH_LEGACY},
                }
            ).to_list()
            for purchase in found:
                await self.purchases.update_one(
                    {"_id": purchase["_id"], "status": CANCELLED},
                    {"$set": {"watch": WATCH_LEGACY}},
                )
            self._audited = True
        watched = await self.purchases.find({"watch": WATCH_LEGACY}).to_list()
        for purchase in watched:
            if purchase.get("recheck_at", now) > now:
                continue
            said = await self._settle_session(
                purchase["_id"], purchase["stripe_session_id"], expire=False
            )
            # a re-seat or a refund happens only for a paid session, which is settled
            if said in SETTLED:
                await self.purchases.update_one(
                    {"_id": purchase["_id"]}, {"$unset": {"watch": "", "recheck_at": ""}}
                )
            else:
                await self.purchases.update_one(
                    {"_id": purchase["_id"]}, {"$set": {"recheck_at": now + RECHECK_EVERY_S}}
                )

    async def _replay_undelivered_events(self, now: float, horizon: float) -> None:
        """Handle the events Stripe could not deliver (still being retried, or given up), as
        Stripe advises for an endpoint that was down.

        The other sweeps ask Stripe about every session the engine issued (and know which
        purchase each belongs to, for longer than Stripe lists events), so an event about one
        of those is left to them: each recovery has one path, and a broken one shows. This is
        how the engine hears of a session it never issued (a Payment Link, the dashboard, other
        code on the account) whose every event was lost: kept for a human, as a delivered one
        would be. Only events older than the grace are read (younger ones are still being
        delivered), each window once: the mark moves past what was handled. A sweep that finds
        nothing writes nothing, so the window of the next one starts where this one did; an
        event its handler could not take (busy, Stripe down) is read again at the next listing.
        Each instance lists at most once per grace: a foreign payment is kept within two graces
        of its events' creation, and an idle sweep (hours of waiting for Stripe's retries to
        run out) costs a Stripe call per grace, not one per sweep."""
        if now < self._next_listing_at:
            return
        mark = await self.sweep_marks.find_one({"_id": UNDELIVERED_MARK})
        since = int(mark["until"]) if mark else int(horizon) - EVENT_RETENTION_S
        until = int(horizon)  # (an empty window, another instance's mark past it, lists nothing)
        try:
            events = await self._undelivered_events(since, until)
        except (OutcomeUnknown, stripe.StripeError, InvalidWebhook):
            return  # the next sweep reads the same window
        self._next_listing_at = now + self.config.reconcile_grace
        if not events:
            return
        reached = until
        for event in events:  # oldest first; each is checked before use
            try:
                session_id = session_id_or_none(event_envelope(event)["data"]["object"].get("id"))
                if session_id is None or await self._purchase_of_session(session_id):
                    continue  # not a session, or one of ours: the other sweeps ask about it
                status = await self._dispatch(event)
            except InvalidWebhook:
                continue  # not shaped as a checkout event: nothing can come of it
            if status != 200:  # (a unit test holds the session's lock: no CI world does)
                created = event.get("created")
                reached = created if isinstance(created, int) and since <= created else since
                break
        await self.sweep_marks.update_one(
            {"_id": UNDELIVERED_MARK}, {"$max": {"until": reached}}, upsert=True
        )

    async def _undelivered_events(self, since: int, until: int) -> list[Any]:
        """Stripe's undelivered events of the types the engine handles created in
        [since, until), oldest first (Stripe lists newest first, a page at a time)."""
        params: dict[str, Any] = {
            "delivery_success": False,
            "types": list(self._webhook_handlers()),
            "created": {"gte": since, "lt": until},
            "limit": EVENTS_PAGE,
        }
        found: list[Any] = []
        while True:
            # a read retried by the next sweep, not by the SDK: a slow Stripe costs one attempt
            page = await self._stripe(self.env.stripe.v1.events.list_async(params, ONE_ATTEMPT))
            events, after = event_page(page)
            found.extend(events)
            if after is None:
                return found[::-1]
            params = {**params, "starting_after": after}

    async def _settle_session(
        self, purchase_id: str, session_id: str, *, expire: bool
    ) -> str | None:
        """Settle the purchase as Stripe's session says, and say what that was: `open`,
        `expired`, `paid`, `failed` (a delayed payment that failed), `unpaid` (one still in
        flight), or None when Stripe did not answer or the session was busy."""
        try:
            if expire:
                await self._expire_session(session_id)  # False when paid meanwhile: honoured below
            session = await self._stripe(
                self.env.stripe.v1.checkout.sessions.retrieve_async(session_id)
            )
            debit_failed = await self._delayed_payment_failed(session)
        except (OutcomeUnknown, stripe.StripeError):
            return None
        if session["status"] == "open":
            return "open"  # nothing to settle: not due yet, or Stripe's expiry lags `expires_at`
        try:
            async with self._lock(
                f"webhook:session:{session_id}", self.config.webhook_lock_timeout
            ):
                await self._settle_as_stripe_says(purchase_id, session, debit_failed)
        except self.sweep_skips:
            return None  # the next sweep asks again; the rest of this one goes on
        if session["status"] == "expired":
            return "expired"
        if debit_failed:
            return "failed"
        return "paid" if session.get("payment_status") == "paid" else "unpaid"

    async def _delayed_payment_failed(self, session: dict[str, Any]) -> bool:
        """A session `complete` but `unpaid` is a delayed payment (a bank debit) still in
        flight, or one that failed: the session reads the same either way, and the event that
        told them apart (`checkout.session.async_payment_failed`) may have been given up. Its
        PaymentIntent tells: `processing` while in flight, `requires_payment_method` once the
        debit failed (a completed session takes no other attempt), or `canceled`."""
        if session["status"] != "complete" or session.get("payment_status") != "unpaid":
            return False
        intent_id = session.get("payment_intent")
        if not isinstance(intent_id, str):  # not in payment mode, which the engine never asks
            return False  # for (no CI scenario reaches it): nothing attempted, nothing failed
        intent = await self._stripe(self.env.stripe.v1.payment_intents.retrieve_async(intent_id))
        return intent.get("status") in ("requires_payment_method", "canceled")

    async def _settle_as_stripe_says(
        self, purchase_id: str, session: dict[str, Any], debit_failed: bool
    ) -> None:
        """Expired: the purchase ends. Complete: honoured (or kept, if it is not ours), or
        failed if its delayed payment failed. (Still open: `_settle_session` asks again at its
        next sweep.)"""
        if session["status"] == "expired":
            await self._end_pending(purchase_id, EXPIRED)
        elif debit_failed:  # complete, unpaid, and its PaymentIntent says the debit failed
            await self._on_session_payment_failed(checkout_session(session))
        elif session["status"] == "complete":
            await self._on_session_paid_or_pending(checkout_session(session))

    async def _repair_seat_ledger(self, horizon: float) -> None:
        """Finish seat moves left half-done, then release reservations no purchase holds (a
        crash between two writes), after a grace. A seat found owned by a completed purchase is
        vouched for (completed is final here), so each sweep reads only the seats in doubt."""
        await self.seats.finish_stale_moves(horizon)
        stale = await self.seats.in_doubt(before=horizon)
        if not stale:
            return
        # one read for all of them (each is re-checked by a conditional write below)
        owners = {
            p["_id"]: p
            for p in await self.purchases.find(
                {"_id": {"$in": sorted({h["purchase_id"] for _, h in stale})}},
                sort=[("_id", 1)],
            ).to_list()
        }
        for program_id, holder in stale:
            purchase = owners.get(holder["purchase_id"])
            if purchase is None:
                await self._release_orphan_seat(program_id, holder, owners)
            elif (
                purchase.get("seat_ref") != holder["ref"] or purchase["status"] not in SEAT_HOLDING
            ):
                await self._release_unheld_seat(program_id, holder, purchase)
            elif purchase["status"] == COMPLETED:  # final: the seat is sold for good
                await self.seats.vouch(holder["ref"])

    async def _release_orphan_seat(
        self, program_id: str, holder: dict[str, Any], owners: dict[str, dict[str, Any]]
    ) -> None:
        """A seat reserved for a purchase never written (its request died or stalled). The
        tombstone written for it joins `owners`: the sweep's other seats of that purchase are
        then released as seats it does not hold."""
        # tombstone first: a late insert by a stalled request now fails on the duplicate id
        tombstone = {
            "_id": holder["purchase_id"],
            "status": FAILED,
            "class_rep": True,
            "program_id": program_id,
            "user_id": None,
            "reason": "orphan seat",
        }
        try:
            await self.purchases.insert_one(dict(tombstone))
        except DuplicateKeyError:
            return
        owners[tombstone["_id"]] = tombstone
        await self.seats.release(program_id, holder["ref"])

    async def _release_unheld_seat(
        self, program_id: str, holder: dict[str, Any], purchase: dict[str, Any]
    ) -> None:
        """A seat its purchase does not hold: the purchase ended but its release never ran (a
        crash between the two writes), or a re-seat lost its race and died before giving it
        back. Burn the ref so a stalled re-seat cannot adopt it, then release it."""
        burned = await self.purchases.update_one(
            {"_id": purchase["_id"], "seat_ref": {"$ne": holder["ref"]}},
            {"$addToSet": {"burned_seat_refs": holder["ref"]}},
        )
        # neither only if a stalled re-seat adopted the ref between the read and the burn
        if burned.matched_count or purchase["status"] not in SEAT_HOLDING:
            await self.seats.release(program_id, holder["ref"])

    async def _retry_refunds(self) -> None:
        """A refund decided but not yet made at Stripe (it failed or timed out in the webhook
        handler) is made here too, as the event's retry would make it: a Stripe slower than
        the handler's timeout for days would otherwise keep the customer's money."""
        owed = await self.purchases.find(
            {"status": REFUNDED, "refund_owed": {"$ne": None}}
        ).to_list()
        for purchase in owed:
            try:
                session = await self._stripe(
                    self.env.stripe.v1.checkout.sessions.retrieve_async(purchase["refund_owed"])
                )
                await self._honour_payment(purchase, checkout_session(session))
            except (OutcomeUnknown, stripe.StripeError, InvalidWebhook):
                continue

    async def _retry_grants(self) -> None:
        """The grants a crash may have stopped, a page at a time: each `_fulfil` unsets
        `fulfilment`, so the next read is the next page. One a duplicate event finds owed is left
        here: it usually races the completing request's own grant."""
        while True:
            page = await self.purchases.find(
                {"fulfilment": FULFILMENT_OWED, "status": COMPLETED}, limit=FULFILMENT_PAGE
            ).to_list()
            for purchase in page:
                await self._fulfil(purchase)
            if len(page) < FULFILMENT_PAGE:
                return

    async def _retry_receipts(self) -> None:
        """The receipts still owed, a page at a time: an email outage leaves thousands, and one
        read of them all held them all in memory at once. A page sent in full has left the
        owed set (each send unsets `receipt`), so the next read is the next page; a failure
        ends the sweep (the provider is down: the next sweep tries again)."""
        while True:
            page = await self.purchases.find(
                {"receipt": RECEIPT_OWED, "status": COMPLETED, "receipt_sent": {"$ne": True}},
                limit=RECEIPT_PAGE,
            ).to_list()
            for purchase in page:
                if not await self._send_receipt(purchase):
                    return
            if len(page) < RECEIPT_PAGE:
                return

    # ------------------------------------------------------------------ plumbing

    def _lock(self, key: str, timeout: float) -> _Locked:
        return _Locked(self.env, key, timeout)


class _Locked:
    """`async with` a keyed lock, turning a lock timeout or outage into `Busy` (HTTP 503)."""

    def __init__(self, env: EngineEnv, key: str, timeout: float) -> None:
        self._cm = env.locks.hold(key, wait_timeout=timeout)

    async def __aenter__(self) -> Lease:
        try:
            return await self._cm.__aenter__()
        except (LockTimeout, LockUnavailable) as exc:
            raise Busy(str(exc)) from exc

    async def __aexit__(self, *exc: object) -> bool | None:
        return await self._cm.__aexit__(*exc)  # type: ignore[arg-type]


def fence_scope_of(locks: object) -> str | None:
    """Where `locks`' fencing tokens are ordered: all processes on one Redis namespace (a shared
    counter with a time floor), or what the service declares as `fence_scope`; None for an
    in-process table, whose tokens restart at 1 with every process."""
    scope = getattr(locks, "fence_scope", None)
    if scope is None and isinstance(locks, RedisLockService):
        scope = f"redis:{locks.namespace}"
    return scope


def _replayed(exc: stripe.StripeError) -> bool:
    """Stripe marks a response replayed from an idempotency key's first execution."""
    headers = exc.headers or {}
    return any(k.lower() == "idempotent-replayed" and v == "true" for k, v in headers.items())


def stripe_json(obj: Any) -> dict[str, Any]:
    """A Stripe answer as plain JSON (stripe>=16 objects are not dicts): the body the SDK parsed
    (`last_response.data`, its documented raw response) rather than `to_dict()`, which walks
    the object tree it built from that very body."""
    response = getattr(obj, "last_response", None)
    data = getattr(response, "data", None)
    return data if isinstance(data, dict) else obj.to_dict()  # the SDK parses to OrderedDicts


def _slot_id(user_id: str, program_id: str) -> str:
    return f"{user_id}:{program_id}"


def _purchase_id(session: dict[str, Any]) -> str | None:
    """The purchase a (shape-checked) session names; a claim, proven by `_foreign_session`."""
    return session.get("client_reference_id") or (session.get("metadata") or {}).get("purchase_id")


def _result(purchase: dict[str, Any], *, reused: bool) -> PurchaseResult:
    return PurchaseResult(
        purchase["_id"], purchase["stripe_session_id"], purchase["checkout_url"], reused
    )
