"""The `[blackbox]` scenario table: how to reach a running checkout service over HTTP.

Plain values, validated and documented like the rest of the scenario (simulator/scenario.py).
A template is a string with placeholders `{user_id}`, `{program_id}`, `{class_rep}`,
`{purchase_id}`, `{session_id}`: in a path each is URL-quoted, in a body each becomes its JSON
value (`"u0_1"`, `true`), so a body template is JSON with bare placeholders.
The defaults describe `paysim serve` (simulator/blackbox/engine_http.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

HTTP_METHODS = {m: f"HTTP {m}" for m in ("GET", "POST", "PUT", "PATCH", "DELETE")}
PLACEHOLDERS = ("user_id", "program_id", "class_rep", "purchase_id", "session_id")


def _setting(default: Any, help: str, **limits: Any) -> Any:
    return field(default=default, metadata={"help": help, **limits})


@dataclass(frozen=True)
class HttpRoute:
    """One action of the service: method, path template and body template."""

    method: str = _setting("POST", "HTTP method", choices=HTTP_METHODS)
    path: str = _setting("/", "path template, from the target URL's root")
    body: str = _setting("", "JSON body template; empty for no body")

    def problems(self) -> list[tuple[str, str]]:
        if not self.path.startswith("/"):
            return [("path", f"expected a path starting with /, got {self.path!r}")]
        return []


@dataclass(frozen=True)
class StateMapping:
    """Where paysim's schema lives in the service's MongoDB (`paysim blackbox --state mongodb://...`)."""

    programs: str = _setting("programs", "collection of programs")
    purchases: str = _setting("purchases", "collection of purchases")
    id: str = _setting("_id", "field: a document's id (both collections)")
    class_rep_limit: str = _setting("class_rep_limit", "program field: the seat limit")
    class_rep_count: str = _setting("class_rep_count", "program field: the seat counter")
    user_id: str = _setting("user_id", "purchase field: the buyer")
    program_id: str = _setting("program_id", "purchase field: the program bought")
    class_rep: str = _setting("class_rep", "purchase field: holds a class-rep seat (boolean)")
    status: str = _setting(
        "status", "purchase field: pending, completed, failed, cancelled, expired or refunded"
    )
    stripe_session_id: str = _setting(
        "stripe_session_id", "purchase field: its Checkout Session id"
    )


@dataclass(frozen=True)
class BlackboxSettings:
    """The service's HTTP API (black-box mode: `paysim blackbox`); times are wall-clock seconds."""

    create: HttpRoute = _setting(
        HttpRoute(
            "POST",
            "/purchases",
            '{"user_id": {user_id}, "program_id": {program_id}, "class_rep": {class_rep}}',
        ),
        "create a purchase; answers the purchase and its Checkout Session",
    )
    purchase_id_at: str = _setting(
        "/purchase_id", "JSON pointer to the purchase id in create's answer"
    )
    session_id_at: str = _setting(
        "/session_id", "JSON pointer to the Checkout Session id in create's answer"
    )
    checkout_url_at: str = _setting(
        "/checkout_url", "JSON pointer to the Checkout URL in create's answer (may be absent)"
    )
    error_at: str = _setting(
        "/error",
        "JSON pointer to an error code in a refusal (limit_reached, already_purchased, busy, "
        "upstream_error, upstream_timeout, not_found, not_cancellable); else the HTTP status decides",
    )
    cancel: HttpRoute = _setting(
        HttpRoute("POST", "/purchases/{purchase_id}/cancel", '{"user_id": {user_id}}'),
        "cancel a purchase",
    )
    success: HttpRoute = _setting(
        HttpRoute("GET", "/success?session_id={session_id}", ""),
        "the success page the customer's browser lands on after paying "
        "(visited when `customers.redirect`)",
    )
    webhook_path: str = _setting("/webhooks/stripe", "where Stripe POSTs webhook events")
    state_path: str = _setting(
        "/paysim/state",
        "JSON state route: {programs: [...], purchases: [...]} in paysim's schema "
        "(unless --state names a MongoDB)",
    )
    state: StateMapping = _setting(
        StateMapping(), "collections and fields of the service's MongoDB, for --state"
    )
    reset_path: str = _setting(
        "/paysim/reset",
        "POSTed {programs: [{id, class_rep_limit, price_cents}]} before each run, so the "
        "service starts empty with the scenario's programs; empty if it has no such route",
    )
    auth_header: str = _setting("X-User-Id", "header carrying the user's identity; empty for none")
    auth_value: str = _setting("{user_id}", "template of that header's value, per user")
    request_timeout_s: float = _setting(
        10.0,
        "seconds a request to the service may take before its outcome is unknown",
        min=0.1,
        max=3600.0,
    )
    poll_every_s: float = _setting(
        0.1, "seconds between reads of the service's state", min=0.01, max=60.0
    )
    webhook_speedup: float = _setting(
        600.0,
        "Stripe's webhook retry schedule runs this many times faster",
        min=1.0,
        max=1_000_000.0,
    )
    settle_s: float = _setting(
        2.0,
        "seconds the service's state must stay unchanged to count as quiescent",
        min=0.0,
        max=3600.0,
    )

    def problems(self) -> list[tuple[str, str]]:
        for key in ("purchase_id_at", "session_id_at", "checkout_url_at", "error_at"):
            value = getattr(self, key)
            if value and not value.startswith("/"):
                return [(key, f"expected a JSON pointer starting with /, got {value!r}")]
        if not self.webhook_path.startswith("/"):
            return [("webhook_path", "expected a path starting with /")]
        if not self.state_path.startswith("/"):
            return [("state_path", "expected a path starting with /")]
        if self.reset_path and not self.reset_path.startswith("/"):
            return [("reset_path", "expected a path starting with /, or empty")]
        return []
