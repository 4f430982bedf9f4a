"""stripe-python's own HTTPX client, pointed at the in-process fake and made deterministic.

The SDK's async path, retries and error mapping all run unchanged; only the transport (an
httpx.MockTransport), the retry jitter (global `random` in the SDK, a seeded rng here) and the
sleep (anyio, so virtual under a MockClock) are swapped.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import anyio
import httpx
import stripe


class SimHTTPXClient(stripe.HTTPXClient):
    def __init__(
        self,
        handler: Callable[[httpx.Request], Awaitable[httpx.Response]],
        rng: random.Random,
        *,
        timeout_s: float | None = 80.0,
    ) -> None:
        super().__init__(timeout=None, verify_ssl_certs=False)
        self._client_async = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        self._rng = rng
        self._timeout_s = timeout_s

    def _add_jitter_time(self, sleep_seconds: float) -> float:
        return sleep_seconds * 0.5 * (1 + self._rng.uniform(0, 1))

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
