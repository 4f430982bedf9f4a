"""The fake Stripe as an ASGI app: Stripe's API over real HTTP, the hosted Checkout page, a ledger.

Routes (all on the base URL that `paysim stripe serve` prints):

    /v1/...                          Stripe's API subset, as the in-process fake serves it to the
                                     SDK: Checkout Sessions (create, retrieve, list, expire),
                                     PaymentIntents, charges (read), refunds (by payment intent
                                     or charge), events; form-encoded bodies,
                                     `Authorization: Bearer sk_...` (or Basic), `Idempotency-Key`,
                                     errors worded and typed as Stripe's. Scenario faults apply:
                                     latency, 500s, 429s, and lost responses / refused requests as
                                     a connection closed with no response.
    GET  /_paysim/checkout/{cs_id}   the hosted Checkout page (a session's `url` points here):
                                     {"session", "payment_intent", "actions"}
    POST /_paysim/checkout/{cs_id}   the customer on the hosted Checkout page; form or JSON body:
                                     action = pay_card | decline | decline_then_pay | bank_debit |
                                     abandon | expire; bank_debit takes outcome = succeeded |
                                     failed and settle_after_s; decline_then_pay retry_after_s.
                                     200 {"action", "session", "payment_intent"} once the
                                     immediate part is done (a delayed part goes on in the
                                     background); 404 unknown session; 409 session not open;
                                     400 bad action or parameter.
    GET  /_paysim/ledger             sessions, payment intents, refunds, events with every
                                     delivery attempt and its status code, requests with faults.
    GET  /_paysim/health             {"ok": true}

Public API: `StripeHttpApp(fake, spawner, snapshot)`; the assembled server (fake, webhooks,
faults, ledger) with its Python API is `simulator.blackbox.stripe_service.serve_fake_stripe`.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

import trio

from simulator.blackbox.asgi import (
    BodyTooLarge,
    IncompleteBody,
    header,
    query_string,
    read_body,
    send_bytes,
    send_json,
)
from simulator.blackbox.serving import Receive, Scope, Send, drop_connection
from simulator.fake_stripe import FakeStripe, errors
from simulator.fake_stripe.api import ApiRequest
from simulator.fake_stripe.errors import ApiError
from simulator.fake_stripe.forms import parse_form
from simulator.fake_stripe.state import API_VERSION
from simulator.fake_stripe.transport import ConnectError, ReadError
from simulator.ids import SequentialIds

CHECKOUT_ROUTE = re.compile(r"/_paysim/checkout/([A-Za-z0-9_]{1,200})")
KEY_PREFIXES = ("sk_test_", "sk_live_", "rk_test_", "rk_live_")
NO_KEY = (
    "You did not provide an API key. You need to provide your API key in the Authorization "
    "header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY'). See "
    "https://stripe.com/docs/api#authentication for details, or we can help at "
    "https://support.stripe.com/."
)
#: the customer's actions on the hosted page, and the fake's payment flow each one runs
ACTIONS = ("pay_card", "decline", "decline_then_pay", "bank_debit", "abandon", "expire")
FLOWS = {"pay_card": "card", "decline": "decline", "decline_then_pay": "decline_then_card"}
#: bounds on the customer's delays (seconds, wall clock)
MAX_RETRY_AFTER_S = 3600.0
MAX_SETTLE_AFTER_S = 86400.0


class BadCustomerRequest(Exception):
    """A customer action the page cannot take: 400 with this message."""


class StripeHttpApp:
    """ASGI app over one `FakeStripe`. `spawner` is a trio nursery (delayed customer flows run
    in it); `snapshot()` gives the ledger served at /_paysim/ledger."""

    def __init__(
        self,
        fake: FakeStripe,
        spawner: trio.Nursery,
        snapshot: Callable[[], dict[str, Any]],
    ) -> None:
        self._fake = fake
        self._spawner = spawner
        self._snapshot = snapshot
        self._ids = SequentialIds("http_")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        method: str = scope["method"].upper()
        try:
            body = await read_body(receive)
        except IncompleteBody:
            return  # the client left mid-body: nothing to execute, no one to answer
        except BodyTooLarge as exc:
            await self._error(send, ApiError(413, "invalid_request_error", f"{exc}."))
            return
        if path.startswith("/v1/"):
            await self._api(scope, method, body, send)
        elif (match := CHECKOUT_ROUTE.fullmatch(path)) and method == "POST":
            await self._checkout(scope, match.group(1), body, send)
        elif match and method == "GET":
            await self._show_page(match.group(1), send)
        elif path == "/_paysim/ledger" and method == "GET":
            await send_json(send, 200, self._snapshot())
        elif path == "/_paysim/health" and method == "GET":
            await send_json(send, 200, {"ok": True})
        else:
            await self._error(send, _unrecognized(method, path))

    # ---- Stripe's API

    async def _api(self, scope: Scope, method: str, body: bytes, send: Send) -> None:
        try:
            api_key = _api_key(header(scope, "authorization"))
            content_type = (header(scope, "content-type") or "").split(";")[0].strip().lower()
            if method == "POST" and body and content_type != "application/x-www-form-urlencoded":
                raise errors.invalid_param(
                    "Invalid request: Stripe reads POST bodies form-encoded "
                    "(Content-Type: application/x-www-form-urlencoded), got "
                    f"{content_type or 'no Content-Type'}.",
                    "body",
                )
            form = body.decode("utf-8") if method == "POST" else query_string(scope)
            params = parse_form(form)
        except ApiError as error:
            await self._error(send, error)
            return
        except (UnicodeDecodeError, ValueError):
            await self._error(send, errors.invalid_param("Invalid request body.", "body"))
            return
        request = ApiRequest(
            method=method,
            path=unquote(bytes(scope.get("raw_path") or scope["path"].encode()).decode("latin-1")),
            params=params,
            api_key=api_key,
            idempotency_key=header(scope, "idempotency-key"),
        )
        try:
            reply = await self._fake.wire(request)
        except (ConnectError, ReadError):
            if not await drop_connection(send):
                await self._error(send, errors.server_error(502))
            return
        await send_bytes(send, reply.status, reply.body, reply.headers)

    async def _error(self, send: Send, error: ApiError) -> None:
        headers = {
            "Request-Id": self._ids.new_id("req"),
            "Stripe-Version": API_VERSION,
            **error.headers,
        }
        await send_json(send, error.status, error.body(), headers)

    # ---- the hosted Checkout page

    async def _checkout(self, scope: Scope, session_id: str, body: bytes, send: Send) -> None:
        try:
            params = _customer_params(scope, body)
            action = params.get("action")
            if action not in ACTIONS:
                raise BadCustomerRequest(f"action must be one of {', '.join(ACTIONS)}")
            if session_id not in self._fake.sessions:
                await send_json(send, 404, _page_error(f"No such checkout.session: {session_id}"))
                return
            status = await self._act(session_id, str(action), params)
        except BadCustomerRequest as exc:
            await send_json(send, 400, _page_error(str(exc)))
            return
        if status == 409:
            await send_json(send, 409, _page_error(f"Checkout Session {session_id} is not open."))
            return
        await send_json(send, 200, {"action": action, **self._page(session_id)})

    async def _show_page(self, session_id: str, send: Send) -> None:
        if session_id not in self._fake.sessions:
            await send_json(send, 404, _page_error(f"No such checkout.session: {session_id}"))
            return
        await send_json(send, 200, {**self._page(session_id), "actions": list(ACTIONS)})

    def _page(self, session_id: str) -> dict[str, Any]:
        """What the hosted page shows: the session and its PaymentIntent, as the API has them."""
        session = self._fake.sessions[session_id]
        intent = self._fake.payment_intents.get(session.payment_intent or "")
        return {
            "session": session.to_json(),
            "payment_intent": intent.to_json() if intent is not None else None,
        }

    async def _act(self, session_id: str, action: str, params: dict[str, Any]) -> int:
        fake = self._fake
        if action == "abandon":  # the customer closes the tab: nothing happens at Stripe
            fake.record("stripe.customer", session_id=session_id, flow="abandon", result="left")
            return 200
        if action == "expire":
            return 200 if fake.expire_now(session_id) else 409
        if action == "bank_debit":
            outcome = params.get("outcome", "succeeded")
            if outcome not in ("succeeded", "failed"):
                raise BadCustomerRequest("outcome must be succeeded or failed")
            flow = "async_success" if outcome == "succeeded" else "async_failure"
        else:
            flow = FLOWS[action]
        retry_after_s = _seconds(params, "retry_after_s", 2.0, MAX_RETRY_AFTER_S)
        settle_after_s = _seconds(params, "settle_after_s", 5.0, MAX_SETTLE_AFTER_S)
        if not fake.session_open(session_id):
            fake.record("stripe.customer", session_id=session_id, flow=action, result="not_open")
            return 409

        async def pay(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            # `started` returns at once: the flow's immediate part runs before the caller
            # resumes, its delayed part (a second card, a settling debit) goes on in the nursery
            task_status.started()
            await fake.customer_pay(
                session_id, flow, retry_after_s=retry_after_s, settle_after_s=settle_after_s
            )

        await self._spawner.start(pay)
        return 200


def _api_key(authorization: str | None) -> str:
    """The secret key of a Bearer or Basic (`curl -u sk_test_...:`) Authorization header."""
    if not authorization:
        raise ApiError(401, "invalid_request_error", NO_KEY, stored=False)
    scheme, _, value = authorization.strip().partition(" ")
    key = value.strip()
    if scheme.lower() == "basic":
        try:
            key = base64.b64decode(key, validate=True).decode("utf-8").partition(":")[0]
        except (binascii.Error, UnicodeDecodeError):
            key = ""
    elif scheme.lower() != "bearer":
        key = ""
    if not key.startswith(KEY_PREFIXES) or len(key) > 255:
        shown = key[:8] + "*" * max(0, len(key) - 12) + key[-4:] if len(key) > 12 else "***"
        raise ApiError(
            401, "invalid_request_error", f"Invalid API Key provided: {shown}", stored=False
        )
    return key


def _unrecognized(method: str, path: str) -> ApiError:
    return ApiError(
        404,
        "invalid_request_error",
        f"Unrecognized request URL ({method}: {path[:200]}).",
        stored=False,
    )


def _customer_params(scope: Scope, body: bytes) -> dict[str, Any]:
    content_type = (header(scope, "content-type") or "").split(";")[0].strip().lower()
    try:
        if content_type == "application/json":
            params = json.loads(body or b"{}")
            if not isinstance(params, dict):
                raise BadCustomerRequest("body must be a JSON object")
            return params
        return parse_form(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise BadCustomerRequest("body must be form-encoded or a JSON object") from None


def _seconds(params: dict[str, Any], name: str, default: float, limit: float) -> float:
    value = params.get(name, default)
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise BadCustomerRequest(f"{name} must be a number of seconds") from None
    if not 0 <= seconds <= limit:
        raise BadCustomerRequest(f"{name} must be between 0 and {limit:g} seconds")
    return seconds


def _page_error(message: str) -> dict[str, Any]:
    return {"error": {"type": "checkout_page_error", "message": message}}
