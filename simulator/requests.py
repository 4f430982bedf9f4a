"""Which request caused a write: a context variable the harness sets around every request.

anyio tasks inherit context variables, so a store write made anywhere inside a client
operation, a webhook delivery, a probe or a reconcile pass carries that request's id into the
history. Checkers use it as evidence ("this forged webhook wrote that document").
"""

from __future__ import annotations

from contextvars import ContextVar, Token
from typing import Any

current_request: ContextVar[str | None] = ContextVar("paysim_request", default=None)


class request_scope:  # noqa: N801 - used as a function: `with request_scope("op7"):`
    """`current_request` is `request_id` inside the block (a class, not a generator-based
    context manager: one is entered for every request)."""

    __slots__ = ("_id", "_token")

    def __init__(self, request_id: str) -> None:
        self._id = request_id

    def __enter__(self) -> None:
        self._token: Token[str | None] = current_request.set(self._id)

    def __exit__(self, *exc: Any) -> None:
        current_request.reset(self._token)
