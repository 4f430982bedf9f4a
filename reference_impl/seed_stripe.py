"""The seed's `services/stripeService.ts`: its Stripe client and the Checkout Session it creates.

Upstream: backend/src/services/stripeService.ts at github.com/TravisHFan/at-Cloud-sign-up-system,
commit dc90aebe. The client is `new Stripe(key, {apiVersion, typescript})` (L144-147): no
`timeout`, no `maxNetworkRetries`, so stripe-node's own defaults for the version the seed pins
(`"stripe": "^19.1.0"`, backend/package.json:L87) apply, read from stripe-node's source:

- `timeout`: `DEFAULT_TIMEOUT = 80000` ms (src/stripe.core.ts), per attempt;
- `maxNetworkRetries`: `validateInteger('maxNetworkRetries', props.maxNetworkRetries, 1)`: one
  automatic retry. The default was 0 before v13 (stripe-node PR #1808, the v13 release), and the
  configuration docs of the 18.x to 22.0 packages say "default 1" (`lib.d.ts`); the source only
  reads 2 from the 22.2 line on;
- idempotency: `RequestSender._defaultIdempotencyKey` adds `stripe-node-retry-<uuid>` to every
  POST when `maxNetworkRetries > 0` and reuses it on the retry, so a retried Checkout Session
  create is replayed by Stripe, not duplicated; GETs (retrieve) carry none and need none;
- retries: connection errors, 409, 5xx and `Stripe-Should-Retry: true`, back-off from 0.5 s
  doubling to at most 5 s with jitter (`INITIAL_NETWORK_RETRY_DELAY_SEC`,
  `MAX_NETWORK_RETRY_DELAY_SEC`).

The port's client is stripe-python's, configured with these values (`SEED_STRIPE_CLIENT`); its
retry rules and back-off constants are the same, and it also sends a key on every POST (with
retries off there is no retry to reuse it, so the difference changes nothing).
"""

from __future__ import annotations

from typing import Any

import stripe

from reference_impl.ports import StripeClientSettings

#: stripe-node 19.x defaults: 80 s per attempt, one automatic retry (see the module docstring)
SEED_STRIPE_CLIENT = StripeClientSettings(timeout_s=80.0, max_network_retries=1)

#: stripeService.ts:L153-157, the development defaults (no environment variables set)
SUCCESS_URL = "http://localhost:5173/purchase/success?session_id={CHECKOUT_SESSION_ID}"
CANCEL_URL = "http://localhost:5173/purchase/cancel"


def checkout_session_params(
    *,
    user_id: str,
    user_email: str,
    program_id: str,
    program_title: str,
    full_price: int,
    final_price: int,
    is_class_rep: bool,
) -> dict[str, Any]:
    """stripeService.ts:L176-266 `createCheckoutSession`: card only, no `expires_at` (Stripe's
    24 h), no `client_reference_id`, no idempotency key of its own; metadata names user and
    program, not the purchase (it does not exist yet)."""
    metadata = {
        "userId": user_id,
        "programId": program_id,
        "programTitle": program_title,
        "fullPrice": str(full_price),
        "classRepDiscount": "0",
        "earlyBirdDiscount": "0",
        "finalPrice": str(final_price),
        "isClassRep": "true" if is_class_rep else "false",
        "isEarlyBird": "false",
    }
    return {
        "customer_email": user_email,
        "payment_method_types": ["card"],
        "line_items": [
            {
                "price_data": {
                    "currency": "usd",
                    "product_data": {"name": program_title, "description": "Program enrollment"},
                    "unit_amount": round(final_price),
                },
                "quantity": 1,
            }
        ],
        "mode": "payment",
        "success_url": SUCCESS_URL,
        "cancel_url": f"{CANCEL_URL}?program_id={program_id}",
        "metadata": metadata,
        "billing_address_collection": "required",
    }


async def create_checkout_session(
    client: stripe.StripeClient, params: dict[str, Any]
) -> stripe.checkout.Session:
    """stripeService.ts:L257-268: `stripe.checkout.sessions.create(...)`, errors propagate."""
    return await client.v1.checkout.sessions.create_async(params)  # type: ignore[arg-type]
