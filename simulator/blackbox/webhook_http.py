"""Webhook deliveries over real HTTP: the transport behind `WebhookDelivery`'s endpoint port.

`WebhookDelivery` (simulator/fake_stripe/webhook_delivery.py) owns Stripe's delivery logic:
signing at each attempt, the retry schedule, timeouts, duplicates, reordering and concurrent
attempts. It calls an endpoint `async (payload, signature_header) -> status`; in simulation that
is an in-process call into the engine, here it is this POST to the service's URL.

Public API:

    async with httpx.AsyncClient() as client:
        endpoint = HttpWebhookEndpoint(url, client, timeout_s=30)
        WebhookDelivery(fake, endpoint, rng, nursery, policy=policy.compressed(60))
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

#: what Stripe's webhook sender sends besides the body and its signature
STRIPE_HEADERS = {
    "Content-Type": "application/json; charset=utf-8",
    "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
    "Cache-Control": "no-cache",
    "Accept": "*/*; q=0.5, application/xml",
}


def _never() -> bool:
    return False


class HttpWebhookEndpoint:
    """POSTs each attempt to `url`; the status code is the answer. A network failure raises (the
    delivery counts it as a failed attempt, named after the exception). The response body is not
    read: Stripe looks at the status only."""

    def __init__(
        self,
        url: str,
        client: httpx.AsyncClient,
        *,
        timeout_s: float,
        fails: Callable[[], bool] = _never,
        record: Callable[..., Any] | None = None,
    ) -> None:
        self.url = url
        self._client = client
        # a little past Stripe's own wait, so a slow attempt's task ends soon after it is
        # counted as timed out (its late answer is still recorded, as in simulation)
        self._timeout = httpx.Timeout(timeout_s + 5.0)
        self._fails = fails
        self._record = record

    async def __call__(self, payload: bytes, signature: str) -> int:
        if self._fails():  # the scenario's webhook_failures: 500 before the service sees it
            if self._record is not None:
                self._record("fault.webhook_failure")
            return 500
        headers = {**STRIPE_HEADERS, "Stripe-Signature": signature}
        async with self._client.stream(
            "POST", self.url, content=payload, headers=headers, timeout=self._timeout
        ) as response:
            return response.status_code
