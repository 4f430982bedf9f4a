"""Where a service under test sends its side effects, so that paysim can count them.

In simulation the engine's fulfilment and email ports are paysim's own fakes, and their ledgers
are what `no_double_completion` trusts. A running service has real side effects instead; it
points them at these sinks, which keep the same ledgers and write the same history entries
(`fulfilment`, `email.sent`, ...), through the same fakes (simulator/services.py):

- HTTP sink (an ASGI app): `POST /fulfilment {purchase_id, user_id, program_id, session_id}`
  (and, optionally, `idempotency_key`: one grant per key) and
  `POST /receipt {purchase_id, user_id, idempotency_key}`; 200, or 503 while the
  scenario's `email_outage` fails the receipt (nothing delivered), 400 for a bad body.
- SMTP sink (aiosmtpd): a receipt is an email with headers `X-Paysim-Purchase-Id`,
  `X-Paysim-User-Id` and `X-Paysim-Idempotency-Key`; answered 250, or 451 during an outage.

Like a real email provider, both deliver a receipt once per idempotency key.
aiosmtpd is a dependency for this: the maintained asyncio SMTP server (the stdlib's smtpd is
gone since Python 3.12). It runs its own asyncio loop in a thread; each message is handed to
the trio side with `trio.from_thread`.
"""

from __future__ import annotations

import email
import email.policy
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio
from aiosmtpd.controller import Controller

from reference_impl.ports import EmailError
from simulator.blackbox.asgi import send_json
from simulator.blackbox.json_routes import HttpError, id_field, json_body
from simulator.blackbox.serving import Receive, Scope, Send
from simulator.services import FakeEmail, RecordingFulfilment

#: headers of a receipt email
PURCHASE_HEADER = "X-Paysim-Purchase-Id"
USER_HEADER = "X-Paysim-User-Id"
KEY_HEADER = "X-Paysim-Idempotency-Key"
MAX_EMAIL_BYTES = 64 * 1024


class SinkApp:
    """The HTTP sink: fulfilments and receipts into paysim's ledgers."""

    def __init__(self, fulfilment: RecordingFulfilment, email: FakeEmail) -> None:
        self.fulfilment = fulfilment
        self.email = email

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        try:
            status, answer = await self._route(scope["method"], scope["path"], receive)
        except HttpError as exc:
            status, answer = exc.status, exc.answer()
        await send_json(send, status, answer)

    async def _route(self, method: str, path: str, receive: Receive) -> tuple[int, Any]:
        if method == "POST" and path == "/fulfilment":
            body = await json_body(receive)
            await self.fulfilment.grant(
                purchase_id=id_field(body, "purchase_id"),
                user_id=id_field(body, "user_id"),
                program_id=id_field(body, "program_id"),
                session_id=id_field(body, "session_id"),
                idempotency_key=(
                    id_field(body, "idempotency_key") if "idempotency_key" in body else None
                ),
            )
            return 200, {"granted": True}
        if method == "POST" and path == "/receipt":
            body = await json_body(receive)
            try:
                await self.email.send_receipt(
                    purchase_id=id_field(body, "purchase_id"),
                    user_id=id_field(body, "user_id"),
                    idempotency_key=id_field(body, "idempotency_key"),
                )
            except EmailError as exc:
                raise HttpError(503, "email_unavailable", str(exc)) from None
            return 200, {"sent": True}
        raise HttpError(404, "not_found", f"no route {method} {path}")


class _Receipts:
    """aiosmtpd handler: each message becomes one `send_receipt` on the trio side."""

    def __init__(self, email: FakeEmail, token: trio.lowlevel.TrioToken) -> None:
        self.email = email
        self.token = token

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content = envelope.original_content or envelope.content or b""
        if len(content) > MAX_EMAIL_BYTES:
            return "552 message too large"
        message = email.message_from_bytes(content, policy=email.policy.default)
        ids = [str(message.get(h, "")).strip() for h in (PURCHASE_HEADER, USER_HEADER, KEY_HEADER)]
        if not all(0 < len(v) <= 200 for v in ids):
            return f"550 a receipt needs {PURCHASE_HEADER}, {USER_HEADER} and {KEY_HEADER}"
        try:
            # blocks this (the SMTP thread's) loop until the trio side has recorded it
            trio.from_thread.run(self._deliver, *ids, trio_token=self.token)
        except EmailError:
            return "451 mailbox unavailable, try again later"
        except trio.RunFinishedError:
            return "421 shutting down"
        return "250 OK"

    async def _deliver(self, purchase_id: str, user_id: str, key: str) -> None:
        await self.email.send_receipt(purchase_id=purchase_id, user_id=user_id, idempotency_key=key)


class _AnyPortController(Controller):
    """aiosmtpd's controller on a port the OS chose (its own start-up probe needs the number)."""

    def _trigger_server(self) -> None:
        assert self.server is not None
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


@asynccontextmanager
async def smtp_sink(email: FakeEmail, host: str = "127.0.0.1") -> AsyncIterator[tuple[str, int]]:
    """An SMTP server on a free port of `host` while the block runs; always stopped after."""
    controller = _AnyPortController(
        _Receipts(email, trio.lowlevel.current_trio_token()), hostname=host, port=0
    )
    await trio.to_thread.run_sync(controller.start)
    try:
        yield host, controller.port
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(controller.stop)


def receipt_message(purchase_id: str, user_id: str, idempotency_key: str) -> bytes:
    """A receipt email as the served engine sends it to an SMTP sink."""
    message = email.message.EmailMessage()
    message["From"] = "receipts@paysim.test"
    message["To"] = f"{user_id}@paysim.test"
    message["Subject"] = f"Your receipt for {purchase_id}"
    message[PURCHASE_HEADER] = purchase_id
    message[USER_HEADER] = user_id
    message[KEY_HEADER] = idempotency_key
    message.set_content(json.dumps({"purchase_id": purchase_id}))
    return bytes(message)
