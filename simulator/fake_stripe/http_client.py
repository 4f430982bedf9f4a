"""stripe-python's own HTTPX client, pointed at the in-process fake and made deterministic.

The SDK's async path, retries and error mapping all run unchanged; only the transport (an
httpx.MockTransport), the retry jitter (global `random` in the SDK, a seeded rng here) and the
sleep (anyio, so virtual under a MockClock) are swapped.

Three costs that buy nothing against the fake are cut, none of which changes what the SDK sends
or how it reacts to an answer (the fake reads neither cookies nor telemetry):
- the httpx client runs its cookie jar over every response; Stripe's API sets no cookies, so a
  response without `Set-Cookie` skips it;
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
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import anyio
import httpx
import stripe
import stripe._api_requestor
import stripe._util


class SimHTTPXClient(stripe.HTTPXClient):
    def __init__(
        self,
        handler: Callable[[httpx.Request], Awaitable[httpx.Response]],
        rng: random.Random,
        *,
        timeout_s: float | None = 80.0,
    ) -> None:
        super().__init__(timeout=None, verify_ssl_certs=False)
        self._client_async = _CookielessAsyncClient(transport=httpx.MockTransport(handler))
        self._rng = rng
        self._timeout_s = timeout_s
        quiet_sdk_logging()

    def _add_jitter_time(self, sleep_seconds: float) -> float:
        return sleep_seconds * 0.5 * (1 + self._rng.uniform(0, 1))

    def _add_telemetry_header(self, headers: Mapping[str, str]) -> Mapping[str, str]:
        return headers

    def _record_request_metrics(self, response: Any, request_start: Any, usage: Any) -> None:
        return None

    def _get_request_args_kwargs(
        self, method: str, url: str, headers: Mapping[str, str], post_data: Any
    ) -> list[Any]:
        """The SDK hands httpx its encoded form as `data=`, which httpx deprecates for raw
        text; pass it as `content=` (same bytes on the wire)."""
        args, kwargs = super()._get_request_args_kwargs(method, url, headers, post_data)
        data = kwargs.pop("data", None)
        if isinstance(data, str | bytes):
            kwargs["content"] = data
        elif data:
            kwargs["data"] = data
        return [args, kwargs]

    def sleep_async(self, secs: float) -> Awaitable[None]:
        return anyio.sleep(secs)

    async def request_async(
        self, method: str, url: str, headers: Mapping[str, str], post_data: Any = None
    ) -> tuple[bytes, int, Mapping[str, str]]:
        """The SDK's own read timeout (80 s by default) in virtual time: a connection error the
        SDK retries with the same idempotency key, as with a real socket."""
        if self._timeout_s is None:
            return await super().request_async(method, url, headers, post_data)
        try:
            with anyio.fail_after(self._timeout_s):
                return await super().request_async(method, url, headers, post_data)
        except TimeoutError as exc:
            self._handle_request_error(exc)


class _SetCookieOnly(httpx.Cookies):
    """A cookie jar that looks at a response only when it sets a cookie."""

    def extract_cookies(self, response: httpx.Response) -> None:
        headers = response.headers
        if "set-cookie" in headers or "set-cookie2" in headers:
            super().extract_cookies(response)


class _CookielessAsyncClient(httpx.AsyncClient):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._cookies = _SetCookieOnly(self._cookies)


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
