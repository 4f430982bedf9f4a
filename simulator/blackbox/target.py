"""A running checkout service, reached over HTTP, seen as paysim's `Engine` protocol.

The scenario's `[blackbox]` table says how each action maps onto the service's HTTP API. With
this adapter the simulation's customers (simulator/workload.py), its load balancer and its
forged-webhook probes drive a real service unchanged: each call is one HTTP request, and its
answer is mapped back to what the in-process engine would have returned or raised, so the
history records ok / fail / info exactly as it does in simulation.

Mapping an answer (the service is hostile until validated: bounded body, exact shapes):
- 2xx: success; create's answer must hold the purchase and session ids at their JSON pointers.
- a refusal whose error code (at `error_at`) paysim knows: that `PurchaseError` (a `fail`).
- else by status: 503 busy, 502 upstream error, 504 upstream timeout (outcome unknown),
  other 4xx a refusal; 5xx an internal error (outcome unknown).
- no connection, or 503 `instance_down`: the request reached no engine (`InstanceDown`, a
  definite failure); a timeout or a connection dropped mid-answer: outcome unknown
  (`InstanceCrashed`).
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import quote

import httpx

from reference_impl import errors
from reference_impl.ports import PurchaseResult
from simulator.blackbox.settings import BlackboxSettings, HttpRoute
from simulator.topology import InstanceCrashed, InstanceDown

#: the error code of a service with no instance up (`paysim serve` after a crash): the request
#: reached no engine, a definite failure (as a refused connection is in simulation)
INSTANCE_DOWN = "instance_down"
#: largest answer paysim reads from the service (a create answer is a few hundred bytes)
MAX_ANSWER_BYTES = 256 * 1024

_PLACEHOLDER = re.compile(r"\{(user_id|program_id|class_rep|purchase_id|session_id)\}")

_ERRORS: dict[str, type[errors.PurchaseError]] = {
    cls.code: cls
    for cls in (
        errors.LimitReached,
        errors.AlreadyPurchased,
        errors.Busy,
        errors.NotFound,
        errors.NotCancellable,
    )
}


class BadAnswer(Exception):
    """The service answered 2xx with something paysim cannot use (an engine bug: HTTP 500)."""


def render_path(template: str, values: dict[str, Any]) -> str:
    """`template` with each placeholder URL-quoted (a path segment or a query value)."""
    return _PLACEHOLDER.sub(lambda m: quote(_text(values.get(m.group(1))), safe=""), template)


def render_body(template: str, values: dict[str, Any]) -> bytes | None:
    """`template` with each placeholder as its JSON value; None for an empty template."""
    if not template:
        return None
    return _PLACEHOLDER.sub(lambda m: json.dumps(values.get(m.group(1))), template).encode()


def render_text(template: str, values: dict[str, Any]) -> str:
    return _PLACEHOLDER.sub(lambda m: _text(values.get(m.group(1))), template)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def json_pointer(doc: Any, pointer: str) -> Any:
    """RFC 6901: the value at `pointer` in `doc`, or None when it is not there."""
    if pointer == "":
        return doc
    for raw in pointer.split("/")[1:]:
        token = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(doc, dict):
            doc = doc.get(token)
        elif isinstance(doc, list) and token.isdigit() and int(token) < len(doc):
            doc = doc[int(token)]
        else:
            return None
    return doc


class HttpTarget:
    """The `Engine` protocol over HTTP: `Clients`, probes and webhooks call it like an engine."""

    def __init__(self, base_url: str, api: BlackboxSettings, client: httpx.AsyncClient) -> None:
        self.base_url = base_url.rstrip("/")
        self.api = api
        self.client = client

    async def create_purchase(
        self, user_id: str, program_id: str, class_rep: bool
    ) -> PurchaseResult:
        values = {"user_id": user_id, "program_id": program_id, "class_rep": class_rep}
        answer = await self._call(self.api.create, values)
        purchase_id = json_pointer(answer, self.api.purchase_id_at)
        session_id = json_pointer(answer, self.api.session_id_at)
        url = json_pointer(answer, self.api.checkout_url_at) if self.api.checkout_url_at else None
        if not _id_like(purchase_id) or not _id_like(session_id):
            raise BadAnswer(
                f"create answered without a purchase id at {self.api.purchase_id_at} and a "
                f"session id at {self.api.session_id_at}: {_preview(answer)}"
            )
        reused = json_pointer(answer, "/reused") is True
        return PurchaseResult(purchase_id, session_id, url if isinstance(url, str) else "", reused)

    async def cancel_purchase(self, user_id: str, purchase_id: str) -> None:
        await self._call(self.api.cancel, {"user_id": user_id, "purchase_id": purchase_id})

    async def handle_success_redirect(self, session_id: str) -> None:
        await self._call(self.api.success, {"session_id": session_id}, auth=False)

    async def handle_webhook(self, payload: bytes, signature_header: str | None) -> int:
        headers = {"content-type": "application/json"}
        if signature_header is not None:
            headers["stripe-signature"] = signature_header
        status, content = await self._send("POST", self.api.webhook_path, payload, headers)
        if status == 503 and _down(content):
            raise InstanceDown("the webhook route answered: no instance is up")
        return status

    async def reconcile(self) -> None:
        """A running service sweeps on its own schedule."""

    # ---- one request

    async def _call(self, route: HttpRoute, values: dict[str, Any], *, auth: bool = True) -> Any:
        headers = {"accept": "application/json"}
        body = render_body(route.body, values)
        if body is not None:
            headers["content-type"] = "application/json"
        if auth and self.api.auth_header:
            headers[self.api.auth_header] = render_text(self.api.auth_value, values)
        status, content = await self._send(
            route.method, render_path(route.path, values), body, headers
        )
        answer = _json_or_none(content)
        if 200 <= status < 300:
            return answer
        raise self._refusal(status, answer)

    async def _send(
        self, method: str, path: str, body: bytes | None, headers: dict[str, str]
    ) -> tuple[int, bytes]:
        """The answer's status and body (at most MAX_ANSWER_BYTES of it)."""
        url = self.base_url + path
        try:
            request = self.client.build_request(method, url, content=body, headers=headers)
            response = await self.client.send(request, stream=True)
            try:
                content = b""
                async for chunk in response.aiter_bytes():
                    content += chunk
                    if len(content) > MAX_ANSWER_BYTES:
                        raise BadAnswer(
                            f"{method} {path}: answer larger than {MAX_ANSWER_BYTES} bytes"
                        )
            finally:
                await response.aclose()
        except httpx.ConnectError as exc:
            raise InstanceDown(f"{method} {path}: cannot connect ({exc})") from None
        except httpx.TimeoutException:
            raise InstanceCrashed(f"{method} {path}: no answer in time") from None
        except httpx.TransportError as exc:
            raise InstanceCrashed(
                f"{method} {path}: connection lost ({type(exc).__name__})"
            ) from None
        return response.status_code, content

    def _refusal(self, status: int, answer: Any) -> Exception:
        code = json_pointer(answer, self.api.error_at) if self.api.error_at else None
        if status == 503 and code == INSTANCE_DOWN:
            return InstanceDown(f"HTTP 503: {code}")
        message = json_pointer(answer, "/message")
        text = f"HTTP {status}: {message if isinstance(message, str) else _preview(answer)}"
        if code in _ERRORS:
            return _ERRORS[code](text)
        if code == "upstream_error" or status == 502:
            return errors.UpstreamError(text)
        if code == "upstream_timeout" or status == 504:
            return errors.UpstreamError(text, outcome_known=False)
        if status == 503:
            return errors.Busy(text)
        if 400 <= status < 500:
            refusal = errors.PurchaseError(text)
            refusal.code = code if isinstance(code, str) and len(code) <= 64 else f"http_{status}"
            refusal.http_status = status
            return refusal
        return RuntimeError(text)  # a 5xx or an odd status: the outcome is unknown


def _down(content: bytes) -> bool:
    answer = _json_or_none(content)
    return isinstance(answer, dict) and answer.get("error") == INSTANCE_DOWN


def _id_like(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= 255


def _json_or_none(content: bytes) -> Any:
    try:
        return json.loads(content) if content else None
    except (ValueError, UnicodeDecodeError):
        return None


def _preview(answer: Any) -> str:
    text = json.dumps(answer)
    return text if len(text) <= 120 else text[:117] + "..."
