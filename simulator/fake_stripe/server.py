"""Stripe's front door, once a request has arrived: rate limit, idempotency key, execution time,
injected 500s; then the API. Records one `stripe.request` per arrival."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import trio

from simulator import json_codec, virtual_time
from simulator.fake_stripe import errors
from simulator.fake_stripe.api import ApiRequest, ApiResponse, Reply, StripeApi
from simulator.fake_stripe.faults import StripeFaults, chance
from simulator.fake_stripe.idempotency import Conflict, IdempotencyStore
from simulator.fake_stripe.ratelimit import TokenBucket
from simulator.ids import SequentialIds


class StripeServer:
    def __init__(
        self,
        api: StripeApi,
        faults: Callable[[], StripeFaults],
        rng: random.Random,
        record: Callable[..., Any],
    ) -> None:
        self._api = api
        self._faults = faults
        self._rng = rng
        self._record = record
        self._keys = IdempotencyStore()
        self._bucket = TokenBucket()
        self._ids = SequentialIds("sim_")
        self._executing = 0

    @property
    def executing(self) -> int:
        """Requests Stripe is still executing (slow execution): each may yet create something."""
        return self._executing

    @property
    def idempotency_keys(self) -> IdempotencyStore:
        return self._keys

    async def process(self, request: ApiRequest, *, lost: bool) -> Reply:
        """Execute `request`; `lost` only marks the record (the network drops the answer)."""
        faults = self._faults()
        request_id = self._ids.new_id("req")
        now = trio.current_time()
        if not self._bucket.take(faults.rate_limit_per_s, now):
            return self._done(request, request_id, errors.rate_limited(), "rate_limited", lost)
        scope = None
        if request.method == "POST" and request.idempotency_key:
            scope = (request.api_key, request.idempotency_key)
            try:
                saved = self._keys.begin(scope, _fingerprint(request), now)
            except Conflict as conflict:
                error = (
                    errors.idempotency_mismatch()
                    if conflict.mismatch
                    else errors.idempotency_key_in_use()
                )
                return self._done(request, request_id, error, None, lost)
            if saved is not None:
                self._log(request, saved.status, None, lost, replayed=True)
                return Reply(
                    saved.status, saved.body, {**saved.headers, "Idempotent-Replayed": "true"}
                )
        if faults.processing_s > 0:
            self._executing += 1
            try:
                await virtual_time.sleep(faults.processing_s)
            except BaseException:
                if scope is not None:
                    self._keys.finish(scope, None)
                raise
            finally:
                self._executing -= 1
        fault = None
        faults = self._faults()
        if chance(self._rng, faults.error_5xx_probability):
            response, fault = ApiResponse.of_error(errors.server_error()), "error_5xx"
        else:
            response = self._api.handle(request)
            if (
                request.method == "POST"
                and response.status < 400
                and chance(self._rng, faults.error_5xx_after_execution_probability)
            ):  # done, and answered as if not: Stripe's 500s promise nothing either way
                response, fault = (
                    ApiResponse.of_error(errors.server_error()),
                    "error_5xx_after_execution",
                )
        reply = response.to_reply(request_id)
        if scope is not None:
            self._keys.finish(scope, reply if response.stored else None)
        self._log(request, reply.status, fault, lost, replayed=False)
        return reply

    def _done(
        self,
        request: ApiRequest,
        request_id: str,
        error: errors.ApiError,
        fault: str | None,
        lost: bool,
    ) -> Reply:
        self._log(request, error.status, fault, lost, replayed=False)
        return ApiResponse.of_error(error).to_reply(request_id)

    def _log(
        self, request: ApiRequest, status: int, fault: str | None, lost: bool, *, replayed: bool
    ) -> None:
        self._record(
            "stripe.request",
            method=request.method,
            path=request.path,
            status=status,
            fault="lost_response" if lost and fault is None else fault,
            replayed=replayed,
        )


def _fingerprint(request: ApiRequest) -> bytes:
    """What makes two requests with one key the same request: equal forms, equal bytes."""
    return json_codec.canonical([request.method, request.path, request.params])
