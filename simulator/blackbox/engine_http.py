"""Any engine paysim can load, served as an HTTP checkout service (`paysim serve`).

The routes are what `[blackbox]`'s defaults describe (simulator/blackbox/settings.py):

    POST /purchases                {user_id, program_id, class_rep} -> {purchase_id, session_id,
                                    checkout_url, reused}; a refusal -> {error, message}
    POST /purchases/{id}/cancel    {user_id}
    GET  /success?session_id=...   the page a paying customer lands on (the redirect race)
    POST /webhooks/stripe          raw body + Stripe-Signature -> the engine's status
    GET  /paysim/state             {programs, purchases}: the store in paysim's schema
    GET  /paysim/ledger            {fulfilments, receipts}: what the sinks recorded
    POST /paysim/reset             {programs: [{id, class_rep_limit, price_cents}]}: an empty
                                    store with these programs, fresh instances, empty ledger
    GET  /healthz

The engine runs behind paysim's own `Cluster` of `Instance`s (simulator/topology.py), so when
paysim started the service itself (`paysim blackbox --serve`), the nemesis can crash and pause
it exactly as in simulation: a request cut short by a crash loses its connection (no answer).
Hostile input gets a 4xx and changes nothing: bodies are bounded, JSON shapes exact, and the
header `X-User-Id`, when sent, must name the body's user.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs, unquote

from reference_impl.errors import PurchaseError, UpstreamError
from reference_impl.ports import Engine, PurchaseResult
from reference_impl.schema import PROGRAMS, PURCHASES
from reference_impl.store import AsyncDatabase
from simulator.blackbox.asgi import header, query_string, send_json
from simulator.blackbox.json_routes import MAX_ID, HttpError, bounded_body, id_field, json_body
from simulator.blackbox.serving import Receive, Scope, Send, drop_connection
from simulator.topology import Cluster, InstanceCrashed, InstanceDown

MAX_WEBHOOK_BODY = 512 * 1024


class EngineApp:
    """The ASGI app: one engine cluster, its store, and the ledger its sinks fill."""

    def __init__(
        self,
        cluster: Cluster,
        db: AsyncDatabase,
        ledger: Callable[[], dict[str, Any]] = dict,
        reset: Callable[[dict[str, Any]], Awaitable[None]] | None = None,
    ) -> None:
        self.cluster = cluster
        self.db = db
        self.ledger = ledger
        self.reset = reset

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        method, path = scope["method"], scope["path"]
        try:
            status, answer = await self._route(method, path, scope, receive)
        except HttpError as exc:
            status, answer = exc.status, exc.answer()
        except InstanceCrashed:
            # the process died mid-request: the client gets no answer at all
            if await drop_connection(send):
                return
            status, answer = 500, {"error": "crashed", "message": "the instance crashed"}
        await send_json(send, status, answer)

    async def _route(
        self, method: str, path: str, scope: Scope, receive: Receive
    ) -> tuple[int, Any]:
        parts = path.strip("/").split("/")
        if method == "POST" and path == "/purchases":
            return await self._create(await json_body(receive), _user_header(scope))
        if (
            method == "POST"
            and len(parts) == 3
            and parts[0] == "purchases"
            and parts[2] == "cancel"
        ):
            return await self._cancel(unquote(parts[1]), await json_body(receive), scope)
        if method == "GET" and path == "/success":
            return await self._success(scope)
        if method == "POST" and path == "/webhooks/stripe":
            return await self._webhook(scope, receive)
        if method == "GET" and path == "/paysim/state":
            return 200, await self.state()
        if method == "GET" and path == "/paysim/ledger":
            return 200, self.ledger()
        if method == "POST" and path == "/paysim/reset" and self.reset is not None:
            await self.reset(await json_body(receive))
            return 200, {"reset": True}
        if method == "GET" and path == "/healthz":
            return 200, {"ok": True}
        raise HttpError(404, "not_found", f"no route {method} {path}")

    # ---- routes

    async def _create(self, body: Any, header_user: str | None) -> tuple[int, Any]:
        user_id = id_field(body, "user_id")
        program_id = id_field(body, "program_id")
        class_rep = body.get("class_rep", False)
        if not isinstance(class_rep, bool):
            raise HttpError(400, "bad_request", "class_rep: expected true or false")
        _same_user(header_user, user_id)
        result = await self._engine_call(
            lambda e: e.create_purchase(user_id, program_id, class_rep)
        )
        assert isinstance(result, PurchaseResult)
        return 200, {
            "purchase_id": result.purchase_id,
            "session_id": result.session_id,
            "checkout_url": result.checkout_url,
            "reused": result.reused,
        }

    async def _cancel(self, purchase_id: str, body: Any, scope: Scope) -> tuple[int, Any]:
        if not purchase_id or len(purchase_id) > MAX_ID:
            raise HttpError(400, "bad_request", "purchase id: expected 1 to 200 characters")
        user_id = id_field(body, "user_id")
        _same_user(_user_header(scope), user_id)
        await self._engine_call(lambda e: e.cancel_purchase(user_id, purchase_id))
        return 200, {"purchase_id": purchase_id, "cancelled": True}

    async def _success(self, scope: Scope) -> tuple[int, Any]:
        query = parse_qs(query_string(scope))
        session_id = (query.get("session_id") or [""])[0]
        if not session_id or len(session_id) > MAX_ID:
            raise HttpError(400, "bad_request", "session_id: expected 1 to 200 characters")

        async def redirect(engine: Engine) -> None:
            handler = getattr(engine, "handle_success_redirect", None)
            if handler is not None:
                await handler(session_id)

        await self._engine_call(redirect)
        return 200, {"session_id": session_id, "thanks": True}

    async def _webhook(self, scope: Scope, receive: Receive) -> tuple[int, Any]:
        payload = await bounded_body(receive, MAX_WEBHOOK_BODY)
        signature = header(scope, "stripe-signature")
        try:
            _, status = await self.cluster.call(lambda e: e.handle_webhook(payload, signature))
        except InstanceDown:
            raise HttpError(503, "instance_down", "no instance is up") from None
        except (InstanceCrashed, HttpError):
            raise
        except Exception as exc:  # an engine bug: Stripe sees a 500 and retries
            raise HttpError(500, "internal", f"{type(exc).__name__}: {exc}") from None
        status = int(status)
        return status, {"received": 200 <= status < 300}

    async def _engine_call(self, fn: Callable[[Engine], Awaitable[Any]]) -> Any:
        try:
            _, value = await self.cluster.call(fn)
        except InstanceDown:
            raise HttpError(503, "instance_down", "no instance is up") from None
        except UpstreamError as exc:
            if exc.outcome_known:
                raise HttpError(502, exc.code, str(exc)) from None
            raise HttpError(504, "upstream_timeout", str(exc)) from None
        except PurchaseError as exc:
            raise HttpError(exc.http_status, exc.code, str(exc)) from None
        except InstanceCrashed:
            raise
        except Exception as exc:  # an engine bug is a 500: the outcome is unknown
            raise HttpError(500, "internal", f"{type(exc).__name__}: {exc}") from None
        return value

    async def state(self) -> dict[str, Any]:
        """The store's programs and purchases, sorted by id, as the checkers read them."""
        out = {}
        for name in (PROGRAMS, PURCHASES):
            docs = await self.db[name].find({}).to_list(None)
            out[name] = sorted(docs, key=lambda d: str(d.get("_id")))
        return json.loads(json.dumps(out, default=str))


def _user_header(scope: Scope) -> str | None:
    return header(scope, "x-user-id")


def _same_user(header_user: str | None, user_id: str) -> None:
    if header_user is not None and header_user != user_id:
        raise HttpError(403, "forbidden", "X-User-Id does not name the body's user_id")
