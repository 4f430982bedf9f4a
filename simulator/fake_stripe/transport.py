"""The wire between the SDK and the fake: uplink latency, arrival, downlink latency, and the
faults on it. Called by the SDK's HTTP client (`http_client.SimHTTPClient`), in the client's task.

An arrived request is processed at once, in the client's task, when Stripe takes no time over it
(nothing in the processing suspends, so nothing can cancel it half-way); when the nemesis makes
Stripe slow (`processing_s`), it executes in a task of its own on the fake's task group, so that
when the client is cancelled (the engine's timeout, a crash) the server side still completes:
the "timed out after the request landed" case. Before arrival, a cancelled request never lands.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from simulator import virtual_time
from simulator.fake_stripe import errors
from simulator.fake_stripe.api import ApiRequest, ApiResponse, Reply
from simulator.fake_stripe.faults import StripeFaults, chance, draw_latency
from simulator.fake_stripe.server import StripeServer
from simulator.tasks import Spawner


class ConnectError(Exception):
    """The request never reached Stripe (refused, or Stripe's edge is down)."""


class ReadError(Exception):
    """The connection broke after Stripe processed the request: the answer is lost."""


@dataclass
class _Landing:
    done: trio.Event = field(default_factory=trio.Event)
    reply: Reply | None = None


class SimNetwork:
    def __init__(
        self,
        server: StripeServer,
        faults: Callable[[], StripeFaults],
        rng: random.Random,
        task_group: Spawner,
        record: Callable[..., Any],
    ) -> None:
        self._server = server
        self._faults = faults
        self._rng = rng
        self._task_group = task_group
        self._record = record

    async def handle(self, request: ApiRequest) -> Reply:
        """The reply to `request`, or ConnectError/ReadError as a socket would fail."""
        latency = draw_latency(self._faults(), self._rng)
        stage = "uplink"
        try:
            # a request is a scheduling point even at zero latency, as a network hop is
            await virtual_time.sleep(latency.uplink_s)
            faults = self._faults()  # read again: the nemesis may have flipped it meanwhile
            if faults.outage:
                reply = self._outage(request)
            elif chance(self._rng, faults.connection_error_probability):
                self._log_unreached(request, "connection_error")
                raise ConnectError("simulated: connection refused")
            else:
                lost = chance(self._rng, faults.lost_response_probability)
                stage = "processing"
                reply = await self._land(request, lost)
                stage = "downlink"
                await _sleep(latency.downlink_s)
                if lost:
                    raise ReadError(
                        "simulated: connection reset after Stripe processed the request"
                    )
                return reply
            stage = "downlink"
            await _sleep(latency.downlink_s)
            return reply
        except trio.Cancelled:
            self._record(
                "stripe.client_gone", method=request.method, path=request.path, stage=stage
            )
            raise

    def _outage(self, request: ApiRequest) -> Reply:
        """Half the requests get a 500 from Stripe's edge, half cannot connect; none executes."""
        if self._rng.random() < 0.5:
            self._log_unreached(request, "outage")
            raise ConnectError("simulated: Stripe outage")
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
        if self._faults().processing_s <= 0:
            # Stripe answers at once: processing never suspends, so no cancellation can cut it
            # short and the client's task may run it (a task of its own would change nothing
            # but the cost)
            return await self._server.process(request, lost=lost)
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


async def _sleep(seconds: float) -> None:
    if seconds > 0:
        await virtual_time.sleep(seconds)
