"""The HTTP surface of the fake: routes, parameter validation and Stripe-shaped JSON.

Handlers are synchronous over `StripeState`, so one request executes atomically. Faults,
idempotency and rate limits sit in front of this (server.py); the network in front of that.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from simulator import json_codec
from simulator.fake_stripe import errors, event_list
from simulator.fake_stripe.errors import ApiError, invalid_param
from simulator.fake_stripe.objects import (
    CheckoutSession,
    PaymentIntent,
    charge_json,
    intent_id_of_charge,
)
from simulator.fake_stripe.state import API_VERSION, StripeState

MIN_TTL_S = 30 * 60
MAX_TTL_S = 24 * 3600

#: create parameters accepted (and mostly ignored); anything else is "unknown parameter", as
#: at Stripe
SESSION_PARAMS = frozenset(
    {
        "mode",
        "line_items",
        "metadata",
        "client_reference_id",
        "expires_at",
        "success_url",
        "cancel_url",
        "payment_intent_data",
        "payment_method_types",
        "customer",
        "customer_email",
        "customer_creation",
        "locale",
        "allow_promotion_codes",
        "billing_address_collection",
        "submit_type",
        "ui_mode",
        "return_url",
        "redirect_on_completion",
        "automatic_tax",
        "invoice_creation",
        "phone_number_collection",
        "consent_collection",
        "custom_text",
        "expand",
    }
)
#: payment method types Checkout accepts in `payment_method_types` (a subset of Stripe's list)
PAYMENT_METHOD_TYPES = (
    "card",
    "acss_debit",
    "affirm",
    "afterpay_clearpay",
    "alipay",
    "au_becs_debit",
    "bacs_debit",
    "bancontact",
    "boleto",
    "customer_balance",
    "eps",
    "giropay",
    "ideal",
    "klarna",
    "konbini",
    "link",
    "p24",
    "paypal",
    "sepa_debit",
    "sofort",
    "us_bank_account",
    "wechat_pay",
)
#: ISO codes the fake's account can charge in (Stripe's list is longer; these suffice)
CURRENCIES = frozenset({"usd", "eur", "gbp", "cad", "aud", "jpy", "chf", "sek", "nzd", "sgd"})
ZERO_DECIMAL = frozenset({"jpy"})
#: smallest and largest total a Checkout Session may charge, in the currency's smallest unit
MIN_AMOUNT = 50
MAX_AMOUNT = 99_999_999
REFUND_PARAMS = frozenset({"payment_intent", "charge", "amount", "reason", "metadata", "expand"})


@dataclass(frozen=True)
class ApiRequest:
    method: str  # upper case
    path: str
    params: dict[str, Any]  # query string (GET) or form body (POST), nested
    api_key: str
    idempotency_key: str | None


@dataclass(frozen=True)
class Reply:
    """What goes back on the wire (and what an idempotency key keeps)."""

    status: int
    body: bytes
    headers: dict[str, str]


@dataclass(frozen=True)
class ApiResponse:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    #: whether an idempotency key keeps this outcome (see errors.ApiError.stored)
    stored: bool = True

    @staticmethod
    def of_error(error: ApiError) -> ApiResponse:
        return ApiResponse(error.status, error.body(), dict(error.headers), error.stored)

    def to_reply(self, request_id: str) -> Reply:
        headers = {
            "Content-Type": "application/json",
            "Request-Id": request_id,
            "Stripe-Version": API_VERSION,
            **self.headers,
        }
        return Reply(self.status, json_codec.pretty(self.body), headers)


Handler = Callable[[ApiRequest, re.Match[str]], dict[str, Any]]


class StripeApi:
    def __init__(self, state: StripeState) -> None:
        self._state = state
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = [
            ("POST", re.compile(r"/v1/checkout/sessions"), self._create_session),
            ("GET", re.compile(r"/v1/checkout/sessions"), self._list_sessions),
            ("GET", re.compile(r"/v1/checkout/sessions/([^/]+)"), self._retrieve_session),
            ("POST", re.compile(r"/v1/checkout/sessions/([^/]+)/expire"), self._expire_session),
            ("GET", re.compile(r"/v1/payment_intents/([^/]+)"), self._retrieve_intent),
            ("POST", re.compile(r"/v1/refunds"), self._create_refund),
            ("GET", re.compile(r"/v1/refunds/([^/]+)"), self._retrieve_refund),
            ("GET", re.compile(r"/v1/events"), self._list_events),
            ("GET", re.compile(r"/v1/events/([^/]+)"), self._retrieve_event),
            # last: no engine in simulation reads charges, so the hot routes match first
            ("GET", re.compile(r"/v1/charges"), self._list_charges),
            ("GET", re.compile(r"/v1/charges/([^/]+)"), self._retrieve_charge),
        ]

    def handle(self, request: ApiRequest) -> ApiResponse:
        try:
            for method, pattern, handler in self._routes:
                match = pattern.fullmatch(request.path)
                if match is not None and method == request.method:
                    return ApiResponse(200, handler(request, match))
            raise ApiError(
                404,
                "invalid_request_error",
                f"Unrecognized request URL ({request.method}: {request.path}).",
                stored=False,
            )
        except ApiError as error:
            return ApiResponse.of_error(error)

    # ---- checkout sessions

    def _create_session(self, request: ApiRequest, _: re.Match[str]) -> dict[str, Any]:
        p = request.params
        _no_unknown(p, SESSION_PARAMS)
        if p.get("mode") != "payment":
            if "mode" not in p:
                raise invalid_param("Missing required param: mode.", "mode", "parameter_missing")
            raise invalid_param("The fake supports only mode=payment.", "mode")
        amount, currency = _line_items(p.get("line_items"))
        if currency not in CURRENCIES:
            raise invalid_param(
                f"Invalid currency: {currency}. Stripe currently supports these currencies: "
                + ", ".join(sorted(CURRENCIES)),
                "line_items[0][price_data][currency]",
            )
        least = 1 if currency in ZERO_DECIMAL else MIN_AMOUNT
        if amount < least:
            raise invalid_param(
                f"The Checkout Session's total amount due must add up to at least {least} "
                f"{currency} (in its smallest unit).",
                "line_items",
                "amount_too_small",
            )
        if amount > MAX_AMOUNT:
            raise invalid_param(
                f"The Checkout Session's total amount due must be no more than {MAX_AMOUNT} "
                f"{currency} (in its smallest unit).",
                "line_items",
                "amount_too_large",
            )
        methods = _payment_method_types(p.get("payment_method_types"))
        now = self._state.now()
        expires_at = now + MAX_TTL_S
        if "expires_at" in p:
            expires_at = _int(p["expires_at"], "expires_at")
            if not now + MIN_TTL_S <= expires_at <= now + MAX_TTL_S:
                raise invalid_param(
                    "The `expires_at` timestamp must be between 30 minutes and 24 hours from "
                    "Checkout Session creation.",
                    "expires_at",
                )
        intent_data = _dict(p.get("payment_intent_data", {}), "payment_intent_data")
        session = self._state.create_session(
            amount_total=amount,
            currency=currency,
            expires_at=expires_at,
            metadata=_metadata(p.get("metadata", {}), "metadata"),
            client_reference_id=_optional_str(p, "client_reference_id", max_len=200),
            success_url=_optional_str(p, "success_url"),
            cancel_url=_optional_str(p, "cancel_url"),
            payment_intent_metadata=_metadata(
                intent_data.get("metadata", {}), "payment_intent_data[metadata]"
            ),
            payment_method_types=methods,
        )
        return self._session_json(session, p)

    def _list_sessions(self, request: ApiRequest, _: re.Match[str]) -> dict[str, Any]:
        p = request.params
        limit = _int(p.get("limit", "10"), "limit")
        if not 1 <= limit <= 100:
            raise invalid_param("limit must be between 1 and 100.", "limit")
        created = _dict(p.get("created", {}), "created")
        bounds = {op: _int(v, f"created[{op}]") for op, v in created.items()}
        sessions = [
            s
            for s in reversed(list(self._state.sessions.values()))  # newest first
            if p.get("status", s.status) == s.status
            and p.get("payment_intent", s.payment_intent) == s.payment_intent
            and _within(s.created, bounds)
        ]
        if "starting_after" in p:
            ids = [s.id for s in sessions]
            after = str(p["starting_after"])
            sessions = sessions[ids.index(after) + 1 :] if after in ids else []
        page = sessions[:limit]
        return {
            "object": "list",
            "data": [self._session_json(s, p) for s in page],
            "has_more": len(sessions) > limit,
            "url": "/v1/checkout/sessions",
        }

    def _retrieve_session(self, request: ApiRequest, match: re.Match[str]) -> dict[str, Any]:
        return self._session_json(self._session(match.group(1)), request.params)

    def _expire_session(self, request: ApiRequest, match: re.Match[str]) -> dict[str, Any]:
        session = self._session(match.group(1))
        if session.status != "open":
            raise errors.invalid_request(
                f'Only Checkout Sessions with a status in ["open"] can be expired. This '
                f'Checkout Session has a status of "{session.status}".',
            )
        self._state.expire_session(session, reason="api")
        return self._session_json(session, request.params)

    def _session(self, session_id: str) -> CheckoutSession:
        session = self._state.sessions.get(session_id)
        if session is None:
            raise errors.no_such("checkout.session", session_id, param="session")
        return session

    def _session_json(self, session: CheckoutSession, params: dict[str, Any]) -> dict[str, Any]:
        body = session.to_json()
        expand = params.get("expand", [])
        if "payment_intent" in expand and session.payment_intent is not None:
            body["payment_intent"] = self._state.payment_intents[session.payment_intent].to_json()
        return body

    # ---- payment intents, refunds, events

    def _retrieve_intent(self, request: ApiRequest, match: re.Match[str]) -> dict[str, Any]:
        intent = self._state.payment_intents.get(match.group(1))
        if intent is None:
            raise errors.no_such("payment_intent", match.group(1), param="intent")
        return intent.to_json()

    def _charge_intent(self, charge_id: str, *, param: str, status: int) -> PaymentIntent:
        intent_id = intent_id_of_charge(charge_id)
        intent = self._state.payment_intents.get(intent_id) if intent_id else None
        if intent is None or charge_json(intent) is None:
            raise errors.no_such("charge", charge_id, param=param, status=status)
        return intent

    def _retrieve_charge(self, request: ApiRequest, match: re.Match[str]) -> dict[str, Any]:
        intent = self._charge_intent(match.group(1), param="id", status=404)
        return cast(dict[str, Any], charge_json(intent))

    def _list_charges(self, request: ApiRequest, _: re.Match[str]) -> dict[str, Any]:
        """Only `payment_intent=` is supported (how a Checkout integration finds its charge)."""
        p = request.params
        if "payment_intent" not in p:
            raise invalid_param(
                "The fake lists charges of one PaymentIntent: pass payment_intent.",
                "payment_intent",
                "parameter_missing",
            )
        intent = self._state.payment_intents.get(str(p["payment_intent"]))
        charge = charge_json(intent) if intent is not None else None
        return {
            "object": "list",
            "data": [charge] if charge is not None else [],
            "has_more": False,
            "url": "/v1/charges",
        }

    def _create_refund(self, request: ApiRequest, _: re.Match[str]) -> dict[str, Any]:
        p = request.params
        _no_unknown(p, REFUND_PARAMS)
        if "charge" in p and "payment_intent" not in p:
            intent = self._charge_intent(str(p["charge"]), param="charge", status=400)
        elif "payment_intent" not in p:
            raise invalid_param(
                "Missing required param: payment_intent.", "payment_intent", "parameter_missing"
            )
        else:
            intent = self._state.payment_intents.get(str(p["payment_intent"]))
        if intent is None:
            raise errors.no_such(
                "payment_intent", str(p["payment_intent"]), param="payment_intent", status=400
            )
        remaining = intent.amount_received - intent.amount_refunded
        amount = _int(p["amount"], "amount") if "amount" in p else remaining
        if intent.status != "succeeded":
            raise errors.invalid_request(
                f"This PaymentIntent ({intent.id}) does not have a successful charge to refund.",
                param="payment_intent",
            )
        if remaining <= 0:
            raise errors.invalid_request(
                f"Charge for {intent.id} has already been refunded.",
                code="charge_already_refunded",
            )
        if not 0 < amount <= remaining:
            raise errors.invalid_request(
                f"Refund amount ({amount}) is greater than unrefunded amount on charge "
                f"({remaining})",
                code="amount_too_large",
                param="amount",
            )
        metadata = _metadata(p.get("metadata", {}), "metadata")
        return self._state.refund(intent, amount, metadata).to_json()

    def _retrieve_refund(self, request: ApiRequest, match: re.Match[str]) -> dict[str, Any]:
        for refund in self._state.refunds:
            if refund.id == match.group(1):
                return refund.to_json()
        raise errors.no_such("refund", match.group(1))

    def _retrieve_event(self, request: ApiRequest, match: re.Match[str]) -> dict[str, Any]:
        event = self._state.find_event(match.group(1))
        if event is None:
            raise errors.no_such("event", match.group(1))
        return event_list.shown(self._state, event)

    def _list_events(self, request: ApiRequest, _: re.Match[str]) -> dict[str, Any]:
        p = request.params
        _no_unknown(p, event_list.PARAMS)
        limit = _int(p.get("limit", "10"), "limit")
        if not 1 <= limit <= 100:
            raise invalid_param("limit must be between 1 and 100.", "limit")
        created = p.get("created", {})
        if isinstance(created, str) and created != "":
            exact = _int(created, "created")
            bounds = {"gte": exact, "lte": exact}
        else:
            bounds = {op: _int(v, f"created[{op}]") for op, v in _dict(created, "created").items()}
            unknown = set(bounds) - {"gt", "gte", "lt", "lte"}
            if unknown:
                raise invalid_param(
                    f"Received unknown parameter: created[{min(unknown)}]", "created"
                )
        query = event_list.EventQuery.parse(p, limit, lambda at: _within(at, bounds))
        return event_list.list_events(self._state, query)


# ---- parameter helpers (values arrive as strings, as on the wire)


def _no_unknown(params: dict[str, Any], known: frozenset[str]) -> None:
    for name in params:
        if name not in known:
            raise invalid_param(f"Received unknown parameter: {name}", name, "parameter_unknown")


def _int(value: Any, param: str) -> int:
    try:
        return int(str(value))
    except ValueError:
        raise invalid_param(
            f"Invalid integer: {value}", param, "parameter_invalid_integer"
        ) from None


def _dict(value: Any, param: str) -> dict[str, Any]:
    if value == "":
        return {}
    if not isinstance(value, dict):
        raise invalid_param(f"Invalid object: {param}", param)
    return value


def _metadata(value: Any, param: str) -> dict[str, str]:
    metadata = _dict(value, param)
    if len(metadata) > 50:
        raise invalid_param("Metadata can have at most 50 keys.", param)
    for key, item in metadata.items():
        if not isinstance(item, str) or len(key) > 40 or len(item) > 500:
            raise invalid_param(f"Invalid metadata value for key {key!r}.", f"{param}[{key}]")
    return {k: v for k, v in metadata.items() if v != ""}  # "" unsets a key at Stripe


def _optional_str(params: dict[str, Any], name: str, max_len: int = 5000) -> str | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > max_len:
        raise invalid_param(f"Invalid string: {name}", name)
    return value


def _line_items(value: Any) -> tuple[int, str]:
    """Total amount and currency of `line_items` built from `price_data`."""
    if not isinstance(value, list) or not value:
        raise invalid_param(
            "Missing required param: line_items.", "line_items", "parameter_missing"
        )
    total, currencies = 0, []
    for i, item in enumerate(value):
        where = f"line_items[{i}]"
        item = _dict(item, where)
        if "price" in item:
            raise errors.no_such("price", str(item["price"]), param=f"{where}[price]", status=400)
        price = _dict(item.get("price_data"), f"{where}[price_data]")
        if "unit_amount" not in price or "currency" not in price:
            raise invalid_param(
                f"Missing required param: {where}[price_data][unit_amount] and [currency].",
                f"{where}[price_data]",
                "parameter_missing",
            )
        if "product_data" not in price and "product" not in price:
            raise invalid_param(
                f"Missing required param: {where}[price_data][product_data].",
                f"{where}[price_data][product_data]",
                "parameter_missing",
            )
        unit = _int(price["unit_amount"], f"{where}[price_data][unit_amount]")
        if "quantity" not in item:
            raise invalid_param(
                f"Missing required param: {where}[quantity].",
                f"{where}[quantity]",
                "parameter_missing",
            )
        quantity = _int(item["quantity"], f"{where}[quantity]")
        if unit < 0 or quantity < 1:
            raise invalid_param("Amounts must be >= 0 and quantity >= 1.", where)
        total += unit * quantity
        currencies.append(str(price["currency"]).lower())
    if len(set(currencies)) != 1:
        raise invalid_param("All line items must use one currency.", "line_items")
    return total, currencies[0]


def _payment_method_types(value: Any) -> tuple[str, ...] | None:
    """None when absent (the account's methods); else a non-empty list of known types."""
    if value is None or value == "":
        return None
    if not isinstance(value, list) or not value:
        raise invalid_param(
            "Invalid array: payment_method_types", "payment_method_types", "parameter_invalid"
        )
    for n, item in enumerate(value):
        if item not in PAYMENT_METHOD_TYPES:
            raise invalid_param(
                f"Invalid payment_method_types[{n}]: must be one of "
                + ", ".join(PAYMENT_METHOD_TYPES),
                f"payment_method_types[{n}]",
            )
    return tuple(dict.fromkeys(value))


def _within(created: int, bounds: dict[str, int]) -> bool:
    checks: dict[str, Callable[[int, int], bool]] = {
        "gt": lambda a, b: a > b,
        "gte": lambda a, b: a >= b,
        "lt": lambda a, b: a < b,
        "lte": lambda a, b: a <= b,
    }
    return all(op in checks and checks[op](created, bound) for op, bound in bounds.items())
