"""The stripe SDK's HTTP client seam, wired straight to the in-process fake and made deterministic.

`stripe.HTTPClient` is the SDK's documented extension point for custom HTTP. Everything above it
runs unchanged: the services, the request builder (form encoding, headers, idempotency keys),
the retry loop and its back-off, response parsing, error mapping and `StripeObject`s. Below it,
instead of a socket, the request goes to the simulated wire (`transport.SimNetwork`), which adds
latency and network faults. No HTTP library sits between them: a MockTransport would only turn
the same bytes into objects and back (it cost a third of each request).

Made deterministic: the retry jitter (global `random` in the SDK, a seeded rng here) and the
sleep (trio's, so virtual under a MockClock). A network failure is reported the way the SDK's own
HTTPX client reports it (`APIConnectionError`, retryable, naming the exception type).

Two costs that buy nothing against the fake are cut (the fake reads no telemetry):
- the SDK's client telemetry (a header with the previous request's wall-clock duration) is off
  for this client: it is wall-clock data in a virtual-time run;
- the SDK formats a log line for every request and response (the whole body, `repr`-quoted)
  even when nothing logs; `quiet_sdk_logging` makes that formatting lazy, process-wide, while
  logging exactly as before whenever `stripe.log`, `STRIPE_LOG` or the `stripe` logger asks.
"""

from __future__ import annotations

import functools
import logging
import random
import textwrap
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, NoReturn
from urllib.parse import unquote, urlsplit

import httpx
import stripe
import stripe._api_requestor
import stripe._util
import trio

from simulator import virtual_time
from simulator.fake_stripe.api import ApiRequest, Reply
from simulator.fake_stripe.forms import parse_form
from simulator.fake_stripe.transport import ConnectError, ReadError

Wire = Callable[[ApiRequest], Awaitable[Reply]]


class SimHTTPClient(stripe.HTTPClient):
    name = "paysim"

    def __init__(self, wire: Wire, rng: random.Random, *, timeout_s: float | None = 80.0) -> None:
        super().__init__(verify_ssl_certs=False)
        self._wire = wire
        self._rng = rng
        self._timeout_s = timeout_s
        quiet_sdk_logging()

    def _add_jitter_time(self, sleep_seconds: float) -> float:
        return sleep_seconds * 0.5 * (1 + self._rng.uniform(0, 1))

    def _add_telemetry_header(self, headers: Mapping[str, str]) -> Mapping[str, str]:
        return headers

    def _record_request_metrics(self, response: Any, request_start: Any, usage: Any) -> None:
        return None

    def sleep_async(self, secs: float) -> Awaitable[None]:
        return virtual_time.sleep(secs)

    async def request_async(
        self, method: str, url: str, headers: Mapping[str, str], post_data: Any = None
    ) -> tuple[bytes, int, Mapping[str, str]]:
        """One attempt. The SDK's own read timeout (80 s by default) runs in virtual time: a
        connection error the SDK retries with the same idempotency key, as with a real socket."""
        request = _api_request(method, url, headers, post_data)
        try:
            if self._timeout_s is None:
                reply = await self._wire(request)
            else:
                with trio.move_on_after(self._timeout_s) as waited:
                    reply = await self._wire(request)
                if waited.cancelled_caught:
                    raise TimeoutError
        except (ConnectError, ReadError, TimeoutError) as exc:
            self._handle_request_error(exc)
        # case-insensitive, as a real client's: the SDK reads `Request-Id` and `stripe-should-retry`
        return reply.body, reply.status, httpx.Headers(reply.headers)

    def _handle_request_error(self, e: Exception) -> NoReturn:
        """Word for word what `stripe.HTTPXClient` raises for a network error."""
        msg = textwrap.fill(
            "Unexpected error communicating with Stripe. If this "
            "problem persists, let us know at support@stripe.com."
        )
        msg += f"\n\n(Network error: A {type(e).__name__} was raised)"
        raise stripe.APIConnectionError(msg, should_retry=True) from e

    def request(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise NotImplementedError("the simulated Stripe is async only")

    def request_stream(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise NotImplementedError("the simulated Stripe is async only")

    async def request_stream_async(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise NotImplementedError("the simulated Stripe streams nothing")

    def close(self) -> None:
        return None

    async def close_async(self) -> None:
        return None


def _api_request(method: str, url: str, headers: Mapping[str, str], post_data: Any) -> ApiRequest:
    """What the fake reads of a request: the SDK's form body (POST) or query string (GET)."""
    parts = urlsplit(url)
    method = method.upper()
    if isinstance(post_data, bytes):
        post_data = post_data.decode()
    lower = {k.lower(): v for k, v in headers.items()}
    return ApiRequest(
        method=method,
        path=unquote(parts.path),
        params=parse_form((post_data or "") if method == "POST" else parts.query),
        api_key=lower.get("authorization", "").removeprefix("Bearer ").strip(),
        idempotency_key=lower.get("idempotency-key"),
    )


# ---- lazy SDK logging


def _lazy(log: Callable[..., None], level: int) -> Callable[..., None]:
    console = ("debug",) if level == logging.DEBUG else ("debug", "info")

    @functools.wraps(log)
    def maybe_log(message: str, **params: Any) -> None:
        if stripe._util._console_log_level() in console or stripe._util.logger.isEnabledFor(level):
            log(message, **params)

    maybe_log.__dict__["_paysim_lazy"] = True
    return maybe_log


def quiet_sdk_logging() -> None:
    """Idempotent: the SDK's `log_info`/`log_debug` format their line only if it is logged."""
    for module in (stripe._util, stripe._api_requestor):
        for name, level in (("log_info", logging.INFO), ("log_debug", logging.DEBUG)):
            current = getattr(module, name)
            if not getattr(current, "_paysim_lazy", False):
                setattr(module, name, _lazy(current, level))
