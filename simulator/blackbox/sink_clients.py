"""The served engine's fulfilment and email ports when they go to a sink over the network.

`paysim serve` keeps fulfilments and receipts in its own ledger (GET /paysim/ledger) unless told
to send them on: to an HTTP sink (`--sink URL`: POST /fulfilment and /receipt) or, for
receipts, to an SMTP server (`--smtp HOST:PORT`). simulator/blackbox/sinks.py is the other end.
"""

from __future__ import annotations

import smtplib

import httpx
import trio

from reference_impl.ports import EmailError
from simulator.blackbox.sinks import receipt_message


class HttpFulfilment:
    """Each grant is one POST; a failed POST raises (the engine retries or reconciles)."""

    def __init__(self, sink_url: str, client: httpx.AsyncClient) -> None:
        self.url = sink_url.rstrip("/") + "/fulfilment"
        self.client = client

    async def grant(
        self,
        *,
        purchase_id: str,
        user_id: str,
        program_id: str,
        session_id: str,
        idempotency_key: str | None = None,
    ) -> None:
        body = {
            "purchase_id": purchase_id,
            "user_id": user_id,
            "program_id": program_id,
            "session_id": session_id,
        }
        if idempotency_key is not None:
            body["idempotency_key"] = idempotency_key
        response = await self.client.post(self.url, json=body, timeout=10.0)
        response.raise_for_status()


class HttpEmail:
    """Each receipt is one POST; any failure is the provider's `EmailError`."""

    def __init__(self, sink_url: str, client: httpx.AsyncClient) -> None:
        self.url = sink_url.rstrip("/") + "/receipt"
        self.client = client

    async def send_receipt(self, *, purchase_id: str, user_id: str, idempotency_key: str) -> None:
        body = {"purchase_id": purchase_id, "user_id": user_id, "idempotency_key": idempotency_key}
        try:
            response = await self.client.post(self.url, json=body, timeout=10.0)
        except httpx.HTTPError as exc:
            raise EmailError(f"receipt sink unreachable: {type(exc).__name__}") from None
        if response.status_code != 200:
            raise EmailError(f"receipt sink answered HTTP {response.status_code}")


class SmtpEmail:
    """Each receipt is one email to an SMTP server (smtplib, in a worker thread)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port

    async def send_receipt(self, *, purchase_id: str, user_id: str, idempotency_key: str) -> None:
        message = receipt_message(purchase_id, user_id, idempotency_key)
        try:
            await trio.to_thread.run_sync(self._send, user_id, message)
        except (OSError, smtplib.SMTPException) as exc:
            raise EmailError(f"SMTP {self.host}:{self.port}: {type(exc).__name__}: {exc}") from None

    def _send(self, user_id: str, message: bytes) -> None:
        with smtplib.SMTP(self.host, self.port, timeout=10.0) as smtp:
            smtp.sendmail("receipts@paysim.test", [f"{user_id}@paysim.test"], message)
