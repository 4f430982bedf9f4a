"""Exceptions escaping an engine method, counted per method, with the first traceback of each.

A crashing engine must be visible: an engine raising `AttributeError` on every create used to
show only "vacuous: the run never showed lock_wait". Each distinct exception (method, type,
where it was raised) is counted and its first traceback kept, for the terminal and the report.

Full tracebacks stay out of the history (they hold file paths, which differ between checkouts,
and the history must be the same bytes everywhere); the summary's `engine_errors` carries them,
for `describe` in the terminal and the report's "Engine exceptions" section. The history gets
one `engine.exception` line per escape, frames as file name:line only
(`topology.record_engine_exception`), which the `no_engine_exception` checker reads.

A value of the wrong type is an engine bug too: `create_purchase` must return a
`PurchaseResult` and `handle_webhook` an HTTP status (reference_impl/ports.py). A stub whose
methods return None is therefore not recorded as `op.ok`: the boundary raises `BadReturn`.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from reference_impl.errors import PurchaseError
from reference_impl.ports import PurchaseResult

#: the engine methods, in the order a call's code is searched for the one it makes
ENGINE_METHODS = (
    "create_purchase",
    "handle_webhook",
    "cancel_purchase",
    "reconcile",
    "handle_success_redirect",
)

#: what each method must return (ports.py); a method not listed may return anything
RETURNS: dict[str, tuple[type, ...]] = {
    "create_purchase": (PurchaseResult,),
    "handle_webhook": (int,),
}

#: traceback lines kept per distinct exception
MAX_TRACEBACK_LINES = 40
#: distinct exceptions kept per run (the rest are counted under the last one)
MAX_DISTINCT = 50


class BadReturn(TypeError):
    """An engine method returned a value its port does not allow."""


@dataclass
class EngineError:
    method: str
    error: str  # "AttributeError: 'NoneType' object has no attribute 'x'" (the first)
    where: str  # file:line of the frame that raised
    count: int
    first_t: float
    traceback: str


def method_of(fn: Callable[..., Any]) -> str:
    """The engine method a call such as `lambda e: e.create_purchase(...)` makes."""
    code = getattr(fn, "__code__", None)
    method = _METHOD_OF_CODE.get(code) if code is not None else None
    if method is None:
        names = getattr(code, "co_names", ())
        method = next((m for m in ENGINE_METHODS if m in names), "engine")
        if code is not None:
            _METHOD_OF_CODE[code] = method
    return method


#: a call site's lambda has one code object, whatever it captures: its method is found once
_METHOD_OF_CODE: dict[Any, str] = {}


def check_return(method: str, value: Any) -> None:
    allowed = RETURNS.get(method)
    if allowed and (not isinstance(value, allowed) or isinstance(value, bool)):
        wanted = " or ".join(t.__name__ for t in allowed)
        raise BadReturn(f"{method} returned {type(value).__name__}, expected {wanted}")


def is_engine_bug(exc: BaseException) -> bool:
    """Domain errors (limit reached, busy, Stripe failed) are answers, not bugs."""
    return isinstance(exc, Exception) and not isinstance(exc, PurchaseError)


class EngineErrors:
    """The run's collection; `seen` is called by the instance that made the call."""

    def __init__(self, now: Callable[[], float]) -> None:
        self._now = now
        self._by_key: dict[tuple[str, str, str], EngineError] = {}

    def seen(self, method: str, exc: BaseException) -> None:
        frames = traceback.extract_tb(exc.__traceback__)
        where = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"
        key = (method, type(exc).__name__, where)
        known = self._by_key.get(key)
        if known is None and len(self._by_key) >= MAX_DISTINCT:
            known = list(self._by_key.values())[-1]
        if known is not None:
            known.count += 1
            return
        lines = "".join(traceback.format_exception(exc)).splitlines()
        if len(lines) > MAX_TRACEBACK_LINES:
            lines = lines[:2] + ["  ..."] + lines[-(MAX_TRACEBACK_LINES - 3) :]
        message = " ".join(str(exc).split())[:300]
        self._by_key[key] = EngineError(
            method=method,
            error=f"{type(exc).__name__}: {message}" if message else type(exc).__name__,
            where=where,
            count=1,
            first_t=round(self._now(), 6),
            traceback="\n".join(lines),
        )

    def as_list(self) -> list[dict[str, Any]]:
        return [asdict(e) for e in self._by_key.values()]


def describe_errors(errors: list[dict[str, Any]], traceback_lines: int = 12) -> list[str]:
    """Terminal lines: each distinct exception, its count, and the end of its first traceback."""
    lines = []
    for e in errors:
        lines.append(
            f"  engine raised in {e['method']} {e['count']}× (first at t={e['first_t']:g} s): "
            f"{e['error']}"
        )
        tail = str(e.get("traceback", "")).splitlines()[-traceback_lines:]
        lines += [f"    | {line}" for line in tail]
    return lines
