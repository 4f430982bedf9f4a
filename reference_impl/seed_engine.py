"""The seed's engine: its purchase, cancel and webhook code (docs/seed-design.md), bugs and all.

This is the system under test that paysim must catch, so it stays faithful to the seed's code,
not to its prose. Each place it differs from a correct engine, and what that difference causes:

1. Its lock (`SeedLockService`, used when locks are in-memory) has no queue: waiters that saw
   one holder all wake together and run at once, and a finishing holder deletes a newer holder's
   entry. With three callers on one `purchase:create` key, two pass the pending check together:
   duplicate pending purchases and two seats reserved for one user.
2. The seat is reserved before the Stripe call and never given back when Stripe fails or times
   out, or when the purchase insert fails: the seat leaks (and on a lost response the Checkout
   Session exists with no purchase referencing it).
3. There is no `checkout.session.expired` handler and no sweeper (`reconcile` does nothing): an
   abandoned session keeps its seat forever, and its purchase stays `pending`.
4. `payment_intent.payment_failed` finds the purchase by `stripe_payment_intent_id`, which is
   only written on completion, so for a pending purchase it finds nothing (the seat leaks). When
   it does find a pending class-rep purchase it decrements without changing the status, so every
   redelivery decrements again: the counter drifts below the seats held, and the next purchases
   get past the limit.
5. Cancel has no lock and no conditional update: it decrements and writes `cancelled` by `_id`,
   and leaves the Stripe session open. The customer can still pay in the open tab; the webhook
   then completes the cancelled purchase whose seat was already released: pay-after-cancel past
   the limit. A cancel racing a completion overwrites `completed` with `cancelled`.
6. The only duplicate guard on `checkout.session.completed` is a read of `status == "completed"`
   followed by an unconditional write, inside the faulty lock: three concurrent deliveries of one
   event, or two instances with their own lock maps, complete, fulfil and email twice. The
   receipt gets a fresh email idempotency key each time, so the provider cannot deduplicate.
7. `checkout.session.completed` never looks at `payment_status`: an `unpaid` (delayed method)
   session is fulfilled before it is paid.
8. The lock's statistics (seed_locks) count the run time as wait time and skip failed calls.

Assumptions, where the seed's code leaves it open: the pending-purchase reuse compares the
session's `expires_at` (stored on the purchase) with the clock; `stripe_timeout` bounds the
Checkout Session call (the seed's "10 s timeout" is in fact its lock wait); a failure to
retrieve the PaymentIntent is ignored as in the seed ("continue anyway") and then leaves
`stripe_payment_intent_id` unset; cancel keeps the purchase with status `cancelled` (the seed
deletes it), which keeps it visible to the checkers.
"""

from __future__ import annotations

import contextlib
from typing import Any

import anyio
import stripe

from reference_impl import errors
from reference_impl.locks import LockTimeout, LockUnavailable
from reference_impl.ports import EngineEnv, PurchaseResult
from reference_impl.schema import CANCELLED, COMPLETED, PENDING, PROGRAMS, PURCHASES
from reference_impl.seed_locks import SeedLockService
from reference_impl.webhook_signature import InvalidWebhook, event_object, verify_event


class SeedEngine:
    """One instance of the seed's backend (purchase, cancel and webhook controllers)."""

    #: the lock the seed ships with; the simulator uses it when locks are in-memory
    memory_lock_service = SeedLockService

    def __init__(self, env: EngineEnv) -> None:
        self.env = env

    # -- purchase ---------------------------------------------------------------------------

    async def create_purchase(
        self, user_id: str, program_id: str, class_rep: bool
    ) -> PurchaseResult:
        """Lock per (user, program), reuse a live pending purchase, else reserve, charge, insert."""
        env = self.env
        program = await env.store[PROGRAMS].find_one({"_id": program_id})
        if program is None:
            raise errors.NotFound(f"program {program_id} not found")
        # the seed's read-only pre-check, outside the lock
        completed = await env.store[PURCHASES].find_one(
            {"user_id": user_id, "program_id": program_id, "status": COMPLETED}
        )
        if completed is not None:
            raise errors.AlreadyPurchased(f"user {user_id} already purchased {program_id}")
        key = f"purchase:create:{user_id}:{program_id}"
        try:
            async with env.locks.hold(key, wait_timeout=env.config.purchase_lock_timeout):
                return await self._create_locked(user_id, program, class_rep)
        except (LockTimeout, LockUnavailable) as exc:
            raise errors.Busy(str(exc)) from exc

    async def _create_locked(
        self, user_id: str, program: dict[str, Any], class_rep: bool
    ) -> PurchaseResult:
        env = self.env
        program_id = program["_id"]
        pending = await env.store[PURCHASES].find_one(
            {"user_id": user_id, "program_id": program_id, "status": PENDING}
        )
        if pending is not None and pending.get("session_expires_at", 0) > env.clock.now():
            return PurchaseResult(
                purchase_id=pending["_id"],
                session_id=pending["stripe_session_id"],
                checkout_url=pending.get("checkout_url", ""),
                reused=True,
            )
        if class_rep:
            # the limit comes from the program read before the lock, as in the seed
            reserved = await env.store[PROGRAMS].find_one_and_update(
                {"_id": program_id, "class_rep_count": {"$lt": program["class_rep_limit"]}},
                {"$inc": {"class_rep_count": 1}},
            )
            if reserved is None:
                raise errors.LimitReached(f"class rep seats of {program_id} are full")
        # from here on a failure leaks the reserved seat: the seed never gives it back
        session = await self._create_session(user_id, program, class_rep)
        now = env.clock.now()
        purchase_id = env.ids.new_id("pur")
        expires_at = session.expires_at or now + env.config.session_ttl
        checkout_url = session.url or ""
        await env.store[PURCHASES].insert_one(
            {
                "_id": purchase_id,
                "user_id": user_id,
                "program_id": program_id,
                "class_rep": class_rep,
                "status": PENDING,
                "stripe_session_id": session.id,
                "session_expires_at": float(expires_at),
                "checkout_url": checkout_url,
                "amount_cents": program.get("price_cents", 0),
                "created_at": now,
                "instance": env.instance,
            }
        )
        return PurchaseResult(
            purchase_id=purchase_id, session_id=session.id, checkout_url=checkout_url
        )

    async def _create_session(
        self, user_id: str, program: dict[str, Any], class_rep: bool
    ) -> stripe.checkout.Session:
        """The seed's Checkout Session: no idempotency key of its own, no purchase id in it."""
        env = self.env
        price = int(program.get("price_cents", 0))
        params: dict[str, Any] = {
            "mode": "payment",
            "payment_method_types": ["card"],
            "line_items": [
                {
                    "price_data": {
                        "currency": env.config.currency,
                        "product_data": {"name": f"Program {program['_id']}"},
                        "unit_amount": price,
                    },
                    "quantity": 1,
                }
            ],
            "success_url": env.config.success_url,
            "cancel_url": env.config.cancel_url,
            "metadata": {
                "userId": user_id,
                "programId": str(program["_id"]),
                "isClassRep": "true" if class_rep else "false",
                "finalPrice": str(price),
            },
        }
        try:
            with anyio.fail_after(env.config.stripe_timeout):
                return await env.stripe.v1.checkout.sessions.create_async(params)  # type: ignore[arg-type]
        except TimeoutError as exc:
            raise errors.UpstreamError("stripe timed out", outcome_known=False) from exc
        except (stripe.APIConnectionError, stripe.APIError) as exc:
            raise errors.UpstreamError(f"stripe: {exc}", outcome_known=False) from exc
        except stripe.StripeError as exc:
            raise errors.UpstreamError(f"stripe: {exc}") from exc

    # -- cancel -----------------------------------------------------------------------------

    async def cancel_purchase(self, user_id: str, purchase_id: str) -> None:
        """Check pending, then decrement and overwrite the status: no lock, nothing conditional."""
        env = self.env
        purchase = await env.store[PURCHASES].find_one({"_id": purchase_id, "user_id": user_id})
        if purchase is None:
            raise errors.NotFound(f"purchase {purchase_id} not found")
        if purchase["status"] != PENDING:
            raise errors.NotCancellable(f"purchase {purchase_id} is {purchase['status']}")
        if purchase.get("class_rep"):
            await env.store[PROGRAMS].update_one(
                {"_id": purchase["program_id"]}, {"$inc": {"class_rep_count": -1}}
            )
        await env.store[PURCHASES].update_one(
            {"_id": purchase_id}, {"$set": {"status": CANCELLED, "cancelled_at": env.clock.now()}}
        )
        # the seed leaves the Checkout Session open: the customer can still pay

    # -- webhooks ---------------------------------------------------------------------------

    async def handle_webhook(self, payload: bytes, signature_header: str | None) -> int:
        """400 on a bad signature, 500 on any error (Stripe retries), else 200."""
        env = self.env
        if not signature_header:
            return 400
        try:
            event = verify_event(
                payload,
                signature_header,
                env.webhook_secret,
                clock=env.clock,
                tolerance=env.config.webhook_tolerance,
            )
        except InvalidWebhook:
            return 400
        try:
            kind = event["type"]
            if kind == "checkout.session.completed":
                await self._session_completed(event_object(event))
            elif kind == "payment_intent.payment_failed":
                await self._payment_failed(event_object(event))
            # no handler for checkout.session.expired or async_payment_*: acknowledged, ignored
        except Exception:
            return 500
        return 200

    async def _session_completed(self, session: dict[str, Any]) -> None:
        """Complete under `webhook:session:{id}`; assumes the session is paid (never checked).

        A lock timeout propagates and becomes a 500, as in the seed.
        """
        env = self.env
        session_id = session["id"]
        key = f"webhook:session:{session_id}"
        async with env.locks.hold(key, wait_timeout=env.config.webhook_lock_timeout):
            purchase = await env.store[PURCHASES].find_one({"stripe_session_id": session_id})
            if purchase is None:
                return  # 200 so that Stripe stops retrying
            if purchase["status"] == COMPLETED:
                return  # the only duplicate guard
            update: dict[str, Any] = {"status": COMPLETED, "completed_at": env.clock.now()}
            intent_id = _intent_id(session.get("payment_intent"))
            if intent_id:
                try:
                    with anyio.fail_after(env.config.stripe_timeout):
                        await env.stripe.v1.payment_intents.retrieve_async(intent_id)
                    update["stripe_payment_intent_id"] = intent_id
                except (TimeoutError, stripe.StripeError):
                    pass  # the seed continues: payment details are only for display
            await env.store[PURCHASES].update_one({"_id": purchase["_id"]}, {"$set": update})
            await env.fulfilment.grant(
                purchase_id=purchase["_id"],
                user_id=purchase["user_id"],
                program_id=purchase["program_id"],
                session_id=session_id,
            )
            with contextlib.suppress(Exception):  # the seed ignores email failure
                await env.email.send_receipt(
                    purchase_id=purchase["_id"],
                    user_id=purchase["user_id"],
                    idempotency_key=env.ids.new_id("email"),
                )

    async def _payment_failed(self, intent: dict[str, Any]) -> None:
        """Give the seat back, found by a field only completion sets; status left unchanged."""
        env = self.env
        purchase = await env.store[PURCHASES].find_one({"stripe_payment_intent_id": intent["id"]})
        if purchase is None:
            return
        if purchase.get("class_rep") and purchase["status"] == PENDING:
            await env.store[PROGRAMS].update_one(
                {"_id": purchase["program_id"]}, {"$inc": {"class_rep_count": -1}}
            )

    # -- sweeper ----------------------------------------------------------------------------

    async def reconcile(self) -> None:
        """The seed has no sweeper."""
        return None


def _intent_id(value: Any) -> str | None:
    """`payment_intent` is an id, an expanded object, or null."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return value.get("id")
    return None
