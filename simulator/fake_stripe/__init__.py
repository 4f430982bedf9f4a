"""A stateful fake Stripe (Checkout Sessions, PaymentIntents, refunds, idempotency keys, signed
webhook events) reached only through the real stripe SDK, plus at-least-once webhook delivery."""

from simulator.fake_stripe.fake import API_BASE, FakeStripe
from simulator.fake_stripe.faults import StripeFaults
from simulator.fake_stripe.objects import CheckoutSession, PaymentIntent, Refund
from simulator.fake_stripe.webhook_delivery import DeliveryStats, WebhookDelivery
from simulator.fake_stripe.webhook_policy import WebhookPolicy

__all__ = [
    "API_BASE",
    "CheckoutSession",
    "DeliveryStats",
    "FakeStripe",
    "PaymentIntent",
    "Refund",
    "StripeFaults",
    "WebhookDelivery",
    "WebhookPolicy",
]
