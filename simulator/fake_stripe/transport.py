"""The wire between the SDK and the fake: uplink latency, arrival, downlink latency, and the
faults on it. Called as httpx.MockTransport's async handler, in the client's task.

An arrived request executes in a task of its own on the fake's task group: when the client is
cancelled (the engine's timeout, a crash) the server side still completes, which is the
"timed out after the request landed" case. Before arrival, a cancelled request never lands.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.abc
import httpx

from simulator.fake_stripe import errors
from simulator.fake_stripe.api import ApiRequest, ApiResponse, Reply
from simulator.fake_stripe.faults import StripeFaults, chance, draw_latency
from simulator.fake_stripe.forms import parse_form
from simulator.fake_stripe.server import StripeServer


@dataclass
class _Landing:
    done: anyio.Event = field(default_factory=anyio.Event)
    reply: Reply | None = None


class SimNetwork:
    def __init__(
        self,
        server: StripeServer,
        faults: Callable[[], StripeFaults],
        rng: random.Random,
        task_group: anyio.abc.TaskGroup,
        record: Callable[..., Any],
    ) -> None:
        self._server = server
        self._faults = faults
        self._rng = rng
        self._task_group = task_group
        self._record = record

    async def handle(self, http_request: httpx.Request) -> httpx.Response:
        request = await _to_api_request(http_request)
        latency = draw_latency(self._faults(), self._rng)
        stage = "uplink"
        try:
            await _sleep(latency.uplink_s)
            faults = self._faults()  # read again: the nemesis may have flipped it meanwhile
            if faults.outage:
                reply = self._outage(request)
            elif chance(self._rng, faults.connection_error_probability):
                self._log_unreached(request, "connection_error")
                raise httpx.ConnectError("simulated: connection refused", request=http_request)
            else:
                lost = chance(self._rng, faults.lost_response_probability)
                stage = "processing"
                reply = await self._land(request, lost)
                stage = "downlink"
                await _sleep(latency.downlink_s)
                if lost:
                    raise httpx.ReadError(
                        "simulated: connection reset after Stripe processed the request",
                        request=http_request,
                    )
                return _to_http(reply)
            stage = "downlink"
            await _sleep(latency.downlink_s)
            return _to_http(reply)
        except anyio.get_cancelled_exc_class():
            self._record(
                "stripe.client_gone", method=request.method, path=request.path, stage=stage
            )
            raise

    def _outage(self, request: ApiRequest) -> Reply:
        """Half the requests get a 500 from Stripe's edge, half cannot connect; none executes."""
        if self._rng.random() < 0.5:
            self._log_unreached(request, "outage")
            raise httpx.ConnectError("simulated: Stripe outage")
        self._record(
            "stripe.request",
            method=request.method,
            path=request.path,
            status=500,
            fault="outage",
            replayed=False,
        )
        return ApiResponse.of_error(errors.server_error()).to_reply("req_outage")

    async def _land(self, request: ApiRequest, lost: bool) -> Reply:
        landing = _Landing()
        self._task_group.start_soon(self._serve, request, lost, landing)
        await landing.done.wait()
        assert landing.reply is not None
        return landing.reply

    async def _serve(self, request: ApiRequest, lost: bool, landing: _Landing) -> None:
        landing.reply = await self._server.process(request, lost=lost)
        landing.done.set()

    def _log_unreached(self, request: ApiRequest, fault: str) -> None:
        self._record(
            "stripe.request",
            method=request.method,
            path=request.path,
            status=None,
            fault=fault,
            replayed=False,
        )


async def _to_api_request(http_request: httpx.Request) -> ApiRequest:
    body = (await http_request.aread()).decode()
    method = http_request.method.upper()
    query = http_request.url.query.decode()
    auth = http_request.headers.get("authorization", "")
    return ApiRequest(
        method=method,
        path=http_request.url.path,
        params=parse_form(body if method == "POST" else query),
        api_key=auth.removeprefix("Bearer ").strip(),
        idempotency_key=http_request.headers.get("idempotency-key"),
    )


def _to_http(reply: Reply) -> httpx.Response:
    return httpx.Response(reply.status, headers=reply.headers, content=reply.body)


async def _sleep(seconds: float) -> None:
    if seconds > 0:
        await anyio.sleep(seconds)
