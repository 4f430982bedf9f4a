"""Shared helpers for the lock tests: virtual time under trio, and a recording listener."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import anyio
import trio.testing

T = TypeVar("T")


def run(fn: Callable[[], Awaitable[T]]) -> T:
    """Run `fn` on trio with a virtual clock that jumps as soon as every task is blocked."""
    clock = trio.testing.MockClock(autojump_threshold=0)
    return anyio.run(fn, backend="trio", backend_options={"clock": clock})


@dataclass(frozen=True)
class Event:
    kind: str
    key: str
    family: str
    wait_s: float | None
    hold_s: float | None
    token: int | None
    at: float


@dataclass
class Recorder:
    """A `LockStats` listener that keeps every event with the virtual time it happened at."""

    events: list[Event] = field(default_factory=list)

    def __call__(
        self,
        kind: str,
        key: str,
        family: str,
        wait_s: float | None,
        hold_s: float | None,
        token: int | None,
    ) -> None:
        self.events.append(Event(kind, key, family, wait_s, hold_s, token, anyio.current_time()))

    def kinds(self) -> list[str]:
        return [e.kind for e in self.events]
