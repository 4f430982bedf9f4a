"""Black-box mode: paysim's fakes and engines over real HTTP, in wall-clock time.

- `serving`: run an ASGI app on Hypercorn under trio on a free local port, always stopped.
- `stripe_http`: the fake Stripe as an HTTP server (API, hosted Checkout page, ledger).
- `webhook_http`: webhook deliveries POSTed to a service's endpoint URL, signed.
- `ledger`: what the fake did, with every delivery attempt and its answer, for inspection.
- `engine_http`, `served`: any engine as an HTTP checkout service (`paysim serve`).
- `driver`, `runs`: a black-box run (`paysim blackbox`): the scenario's customers, Stripe and
  faults against a service over HTTP, judged like a simulated run; `target` maps the
  scenario's `[blackbox]` API description (`settings`) onto the engine protocol, `state`
  reads the service's state, `sinks` receive its fulfilments and receipts.
"""
