"""Black-box mode: paysim's fakes and engines over real HTTP, in wall-clock time.

- `serving`: run an ASGI app on Hypercorn under trio on a free local port, always stopped.
- `stripe_http`: the fake Stripe as an HTTP server (API, hosted Checkout page, ledger).
- `webhook_http`: webhook deliveries POSTed to a service's endpoint URL, signed.
- `ledger`: what the fake did, with every delivery attempt and its answer, for inspection.
"""
