"""Which request caused a write: a context variable the harness sets around every request.

anyio tasks inherit context variables, so a store write made anywhere inside a client
operation, a webhook delivery, a probe or a reconcile pass carries that request's id into the
history. Checkers use it as evidence ("this forged webhook wrote that document").
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

current_request: ContextVar[str | None] = ContextVar("paysim_request", default=None)


@contextmanager
def request_scope(request_id: str) -> Iterator[None]:
    token = current_request.set(request_id)
    try:
        yield
    finally:
        current_request.reset(token)
