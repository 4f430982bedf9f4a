"""The seed engine: the seed's purchase and webhook controllers, ported line by line, bugs and all.

Upstream: github.com/TravisHFan/at-Cloud-sign-up-system at commit dc90aebe, directory
backend/src/. Every method below names the lines it ports; lay it beside
controllers/purchaseController.ts, controllers/webhookController.ts, services/stripeService.ts
(`reference_impl/seed_stripe.py`), services/LockService.ts (`reference_impl/seed_locks.py`) and
models/Purchase.ts (`reference_impl/seed_mongoose.py`). Calls to the store and to Stripe are made
in the order the upstream code makes them, with the same branches and HTTP statuses.

What the port boundary forces, and whether it can change an outcome:

| upstream | port | why | outcome changed? |
|---|---|---|---|
| Express route + `req.user` (auth middleware) | `create_purchase(user_id, ...)` etc. | engines are called in-process | no: 401 paths are unreachable for a logged-in user |
| `programId` validated as ObjectId (L28-33, L526, L811) | ids are strings | the harness's ids | no: the harness never sends a malformed id |
| `program.isFree` → 400 (L43-49) | not ported | scenario programs always have a price | no |
| class-rep / early-bird discounts (L142-167) | `final_price = price_cents` | scenarios have no discounts | no (price only) |
| Mongoose ObjectId `_id` | `env.ids.new_id("pur")` | deterministic ids | no |
| response `{sessionId, sessionUrl, existing}` | `PurchaseResult` also carries the purchase id | the workload cancels by id; the UI finds it on the pending page | no |
| `Purchase.findByIdAndUpdate` / `findByIdAndDelete` | `update_one` / `delete_one` by `_id` | the returned document is unused | no: one round trip, same write |
| Mongoose `save()` | `seed_mongoose.Document.save` | same semantics: `$set` of modified paths, last writer wins, `DocumentNotFoundError` | no |
| unique index on `orderNumber` (autoIndex at start) | created when an instance starts | Mongoose builds it when the model compiles | no |
| `timestamps: true` (`createdAt`, `updatedAt`) | `created_at`, `updated_at` from the virtual clock | determinism | no |
| stripe-node client (80 s timeout, 1 retry, retry keys) | stripe-python client with those values (`SEED_STRIPE_CLIENT`) | paysim drives the real Python SDK | no: same timeout, retries, back-off and key reuse |
| `stripe.webhooks.constructEvent` (300 s tolerance) | `verify_event` with `config.webhook_tolerance` (300 s) | same HMAC and tolerance | no |
| lock timeouts 10 000 / 15 000 ms literals (L222, L227) | `config.purchase_lock_timeout` / `webhook_lock_timeout` | a scenario may vary them | no at the defaults (10 s, 15 s) |
| access = a completed purchase (`checkProgramAccess`, L648-661) | `env.fulfilment.grant` right after the `save()` that completes (L180) | the harness's ledger of service given | no: one grant per completion the seed performs |
| `EmailService.sendPurchaseConfirmationEmail`, no idempotency key | `env.email.send_receipt` with a fresh key each call | the port's email takes a key | no: every upstream call is a separate email |
| `charges.retrieve` when the PaymentIntent has `latest_charge` (L131-149) | ported; taken for every paid session, as upstream (the fake's PaymentIntents name their `latest_charge`, whose `payment_method_details.card` gives brand and last4) | — | no: the same extra Stripe call inside the webhook lock |
| Node's single-threaded event loop | trio tasks; every store/Stripe call is a scheduling point | the simulator's scheduler | no: interleavings only at `await`s, as in Node |

Not ported (no route the workload reaches): `verifySession`, `getMyPurchases`, `getPurchaseById`,
`getPurchaseReceipt`, `checkProgramAccess` (read-only), `retryPendingPurchase` (L682-790) and the
test-only `manuallyCompletePurchase` (L882-951).
"""

from __future__ import annotations

import contextlib
from typing import Any

from reference_impl import errors
from reference_impl.locks import LockTimeout, LockUnavailable
from reference_impl.ports import EngineEnv, PurchaseResult
from reference_impl.schema import COMPLETED, FAILED, PENDING, PROGRAMS, PURCHASES
from reference_impl.seed_locks import SeedLockService
from reference_impl.seed_mongoose import (
    Document,
    ensure_order_number_index,
    find_one,
    generate_order_number,
)
from reference_impl.seed_stripe import (
    SEED_STRIPE_CLIENT,
    checkout_session_params,
    create_checkout_session,
)
from reference_impl.webhook_signature import InvalidWebhook, event_object, verify_event

#: getMyPendingPurchases' first cleanup: pending purchases older than this are deleted (L369)
PENDING_MAX_AGE_S = 24 * 60 * 60


class AlreadyBought(errors.AlreadyPurchased):
    """purchaseController.ts:L58-64: "You have already purchased this program." (400)."""

    http_status = 400


class SlotsFull(errors.LimitReached):
    """L130-135, mapped at L241-251: "Class Rep slots are full." (400)."""

    http_status = 400


class NotYours(errors.PurchaseError):
    """L828-837: "You can only cancel your own purchases." (403)."""

    http_status = 403
    code = "forbidden"


class NotPending(errors.NotCancellable):
    """L840-846: "Cannot cancel a {status} purchase." (400)."""

    http_status = 400


class ServerError(errors.UpstreamError):
    """Any other error of a controller: 500 with a generic message; what was done is unknown."""

    http_status = 500
    code = "internal"

    def __init__(self, message: str) -> None:
        super().__init__(message, outcome_known=False)


class SeedEngine:
    """One instance (Node process) of the seed's backend."""

    #: services/LockService.ts, the in-memory lock the seed ships with
    memory_lock_service = SeedLockService
    #: services/stripeService.ts:L144-147 uses stripe-node's defaults
    stripe_client_settings = SEED_STRIPE_CLIENT

    def __init__(self, env: EngineEnv) -> None:
        self.env = env
        ensure_order_number_index(env.store.sync[PURCHASES])

    # -- POST /api/purchases/create-checkout-session ------------------------------------------

    async def create_purchase(
        self, user_id: str, program_id: str, class_rep: bool
    ) -> PurchaseResult:
        """purchaseController.ts:L13-259 `createCheckoutSession`, outside the lock."""
        env = self.env
        program = await env.store[PROGRAMS].find_one({"_id": program_id})  # L36
        if program is None:
            raise errors.NotFound("Program not found.")  # L37-40
        # L51-64: the completed check is read-only and outside the lock
        completed = await env.store[PURCHASES].find_one(
            {"user_id": user_id, "program_id": program_id, "status": COMPLETED}
        )
        if completed is not None:
            raise AlreadyBought("You have already purchased this program.")
        key = f"purchase:create:{user_id}:{program_id}"  # L67
        try:
            async with env.locks.hold(key, wait_timeout=env.config.purchase_lock_timeout):  # L74
                return await self._create_locked(user_id, program, class_rep)
        except (LockTimeout, LockUnavailable) as exc:  # L233-239
            raise errors.Busy("Purchase operation in progress, please wait and try again.") from exc
        except SlotsFull:  # L242-251
            raise
        except Exception as exc:  # L253-257
            raise ServerError(f"Failed to create checkout session. ({exc})") from exc

    async def _create_locked(
        self, user_id: str, program: dict[str, Any], class_rep: bool
    ) -> PurchaseResult:
        """L76-220, the critical section."""
        env = self.env
        purchases = env.store[PURCHASES]
        program_id = program["_id"]
        pending = await purchases.find_one(  # L78-82
            {"user_id": user_id, "program_id": program_id, "status": PENDING}
        )
        if pending is not None and pending.get("stripe_session_id"):  # L85
            try:
                # L88-90: a Stripe call inside the lock
                existing = await env.stripe.v1.checkout.sessions.retrieve_async(
                    pending["stripe_session_id"]
                )
                if existing.status != "expired":  # L93-102: open *or complete* is returned
                    return PurchaseResult(
                        purchase_id=pending["_id"],
                        session_id=existing.id,
                        checkout_url=existing.url or "",
                        reused=True,
                    )
            except Exception:  # noqa: S110 - L103-106: any error means "create a new one"
                pass
        limit = program.get("class_rep_limit")  # the program read before the lock (L36)
        if class_rep and limit and limit > 0:  # L110-114: a limit of 0 reserves nothing
            reserved = await env.store[PROGRAMS].find_one_and_update(  # L116-128
                {"_id": program_id, "class_rep_count": {"$lt": limit}},
                {"$inc": {"class_rep_count": 1}},
            )
            if reserved is None:  # L130-135
                raise SlotsFull("Class Rep slots are full. Please proceed with standard pricing.")
        full_price = int(program.get("price_cents", 0))  # L143
        final_price = max(0, full_price)  # L164-167, no discounts in the harness
        email = f"{user_id}@users.example"
        session = await create_checkout_session(  # L170-181
            env.stripe,
            checkout_session_params(
                user_id=user_id,
                user_email=email,
                program_id=str(program_id),
                program_title=str(program.get("title") or program_id),
                full_price=full_price,
                final_price=final_price,
                is_class_rep=bool(class_rep),
            ),
        )
        # from here on a failure leaves the seat reserved and the session open: nothing undoes them
        now = env.clock.now()
        order_number = await generate_order_number(purchases, now)  # L184-188
        purchase_id = env.ids.new_id("pur")
        await purchases.insert_one(  # L190-210; the unique order number can refuse it
            {
                "_id": purchase_id,
                "user_id": user_id,
                "program_id": program_id,
                "order_number": order_number,
                "full_price": full_price,
                "class_rep_discount": 0,
                "early_bird_discount": 0,
                "final_price": final_price,
                "class_rep": bool(class_rep),
                "is_early_bird": False,
                "stripe_session_id": session.id,
                "status": PENDING,
                "billing_info": {"full_name": user_id, "email": email},
                "payment_method": {"type": "card"},
                "purchase_date": now,
                "created_at": now,
                "updated_at": now,
                "instance": env.instance,
            }
        )
        return PurchaseResult(  # L216-220
            purchase_id=purchase_id, session_id=session.id, checkout_url=session.url or ""
        )

    # -- DELETE /api/purchases/:id ------------------------------------------------------------

    async def cancel_purchase(self, user_id: str, purchase_id: str) -> None:
        """purchaseController.ts:L797-875 `cancelPendingPurchase`: no lock, and it *deletes*."""
        env = self.env
        try:
            purchase = await env.store[PURCHASES].find_one({"_id": purchase_id})  # L818
            if purchase is None:
                raise errors.NotFound("Purchase not found.")  # L820-825
            if purchase["user_id"] != user_id:
                raise NotYours("You can only cancel your own purchases.")  # L828-837
            status = purchase["status"]
            if status != PENDING:  # L840-846
                raise NotPending(
                    f"Cannot cancel a {status} purchase. Only pending purchases can be cancelled."
                )
            if purchase.get("class_rep"):  # L849-858: whether or not a seat was reserved
                await env.store[PROGRAMS].update_one(
                    {"_id": purchase["program_id"]}, {"$inc": {"class_rep_count": -1}}
                )
            await env.store[PURCHASES].delete_one({"_id": purchase_id})  # L860
            # the Checkout Session is not expired: the customer can still pay it
        except errors.PurchaseError:
            raise
        except Exception as exc:  # L868-874
            raise ServerError(f"Failed to cancel purchase. ({exc})") from exc

    # -- GET /api/purchases/my-pending-purchases ----------------------------------------------

    async def list_pending_purchases(self, user_id: str) -> list[str]:
        """purchaseController.ts:L356-439 `getMyPendingPurchases`: two cleanups that delete
        purchases without giving their seats back and without expiring their sessions."""
        env = self.env
        purchases = env.store[PURCHASES]
        try:
            now = env.clock.now()
            await purchases.delete_many(  # L368-374
                {
                    "user_id": user_id,
                    "status": PENDING,
                    "created_at": {"$lt": now - PENDING_MAX_AGE_S},
                }
            )
            query = {"user_id": user_id, "status": PENDING}
            order = [("created_at", -1)]
            pending = await purchases.find(query, sort=order).to_list()  # L383-388
            redundant = []
            for doc in pending:  # L391-403
                done = await purchases.find_one(
                    {"user_id": user_id, "program_id": doc["program_id"], "status": COMPLETED}
                )
                if done is not None:
                    redundant.append(doc["_id"])
            if redundant:  # L405-425
                await purchases.delete_many({"_id": {"$in": redundant}})
                pending = await purchases.find(query, sort=order).to_list()
            return [doc["_id"] for doc in pending]
        except Exception as exc:  # L432-438
            raise ServerError(f"Failed to fetch pending purchases. ({exc})") from exc

    # -- POST /api/webhooks/stripe ------------------------------------------------------------

    async def handle_webhook(self, payload: bytes, signature_header: str | None) -> int:
        """webhookController.ts:L18-80 `handleStripeWebhook`."""
        env = self.env
        if not signature_header:  # L21-26
            return 400
        try:  # L30-41
            event = verify_event(
                payload,
                signature_header,
                env.webhook_secret,
                clock=env.clock,
                tolerance=env.config.webhook_tolerance,
            )
        except InvalidWebhook:
            return 400
        try:  # L44-69
            kind = event["type"]
            if kind == "checkout.session.completed":
                await self._session_completed(event_object(event))
            elif kind == "payment_intent.succeeded":
                await self._intent_succeeded(event_object(event))
            elif kind == "payment_intent.payment_failed":
                await self._intent_failed(event_object(event))
            # default (L67-68): logged and acknowledged, `checkout.session.expired` included
        except Exception:  # L73-79
            return 500
        return 200  # L72

    async def _session_completed(self, session: dict[str, Any]) -> None:
        """webhookController.ts:L85-229; `payment_status` is never looked at."""
        env = self.env
        session_id = session["id"]
        key = f"webhook:session:{session_id}"  # L91
        async with env.locks.hold(key, wait_timeout=env.config.webhook_lock_timeout):  # L93, L227
            purchase = await find_one(env.store[PURCHASES], {"stripe_session_id": session_id})
            if purchase is None:  # L101-107: 200, so Stripe stops retrying
                return
            if purchase["status"] == COMPLETED:  # L110-116: the only duplicate guard
                return
            intent_id = session.get("payment_intent")  # L119
            payment_method: dict[str, Any] = {"type": "card"}  # L120-125
            if intent_id:  # L127-156
                try:
                    intent = await env.stripe.v1.payment_intents.retrieve_async(intent_id)
                    latest = getattr(intent, "latest_charge", None)
                    if latest:  # L131-149
                        charge_id = latest if isinstance(latest, str) else latest.id
                        charge = await env.stripe.v1.charges.retrieve_async(charge_id)
                        details = getattr(charge, "payment_method_details", None)
                        card = getattr(details, "card", None)
                        if card:
                            payment_method = {
                                "type": "card",
                                "card_brand": getattr(card, "brand", None),
                                "last4": getattr(card, "last4", None),
                            }
                    purchase["stripe_payment_intent_id"] = intent_id  # L151
                except Exception:  # noqa: S110 - L152-155: "continue anyway"
                    pass
            details = session.get("customer_details")
            if details:  # L159-170
                purchase["billing_info"] = {
                    "full_name": details.get("name") or purchase["billing_info"]["full_name"],
                    "email": details.get("email") or purchase["billing_info"]["email"],
                }
            purchase["payment_method"] = payment_method  # L173
            now = env.clock.now()
            purchase["status"] = COMPLETED  # L176
            purchase["purchase_date"] = now  # L177
            await purchase.save(now)  # L180: DocumentNotFoundError if cancel deleted it
            await env.fulfilment.grant(
                purchase_id=purchase["_id"],
                user_id=purchase["user_id"],
                program_id=purchase["program_id"],
                session_id=session_id,
            )
            with contextlib.suppress(Exception):  # L186-225: best effort, never retried
                await env.email.send_receipt(
                    purchase_id=purchase["_id"],
                    user_id=purchase["user_id"],
                    idempotency_key=env.ids.new_id("email"),
                )

    async def _intent_succeeded(self, intent: dict[str, Any]) -> None:
        """webhookController.ts:L234-257: no lock; finds only purchases a completion already
        tagged with the PaymentIntent (L151), so it can only restore `completed` (no email)."""
        purchase = await find_one(
            self.env.store[PURCHASES], {"stripe_payment_intent_id": intent["id"]}
        )
        if purchase is None:  # L242-245
            return
        if purchase["status"] != COMPLETED:  # L248-256
            now = self.env.clock.now()
            purchase["status"] = COMPLETED
            purchase["purchase_date"] = now
            await purchase.save(now)

    async def _intent_failed(self, intent: dict[str, Any]) -> None:
        """webhookController.ts:L262-296: no lock; marks the purchase `failed` whatever its
        status, so a late failure event turns a completed, paid purchase into `failed`."""
        env = self.env
        purchase: Document | None = await find_one(
            env.store[PURCHASES], {"stripe_payment_intent_id": intent["id"]}
        )
        if purchase is None:  # L270-273: a pending purchase has no PaymentIntent id yet
            return
        if purchase.get("class_rep") and purchase["status"] == PENDING:  # L276-286
            await env.store[PROGRAMS].update_one(
                {"_id": purchase["program_id"]}, {"$inc": {"class_rep_count": -1}}
            )
        purchase["status"] = FAILED  # L289
        await purchase.save(env.clock.now())  # L290

    # -- no sweeper ---------------------------------------------------------------------------

    async def reconcile(self) -> None:
        """The seed has no sweeper and no `checkout.session.expired` handler."""
        return None
