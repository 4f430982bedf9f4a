"""Helpers for the fake Stripe tests: virtual time on trio, a seeded scheduler, a recorder."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio
import anyio.abc
import trio.testing

from simulator.clock import SimClock
from simulator.fake_stripe import FakeStripe, StripeFaults
from simulator.scheduling import seed_scheduler

T = TypeVar("T")
SECRET = "whsec_test_secret"


def run(fn: Callable[[], Awaitable[T]], *, seed: int = 0) -> T:
    """Run `fn` on trio with a virtual clock that jumps as soon as every task is blocked."""
    seed_scheduler(seed)
    clock = trio.testing.MockClock(autojump_threshold=0)
    return anyio.run(fn, backend="trio", backend_options={"clock": clock})


@dataclass
class Recorder:
    """A `record` callback keeping (virtual time, type, fields) like History does."""

    entries: list[tuple[float, str, dict[str, Any]]] = field(default_factory=list)

    def __call__(self, type: str, **fields: Any) -> None:
        self.entries.append((round(anyio.current_time(), 6), type, fields))

    def of(self, type: str) -> list[dict[str, Any]]:
        return [f for _, t, f in self.entries if t == type]

    def times(self, type: str) -> list[float]:
        return [at for at, t, _ in self.entries if t == type]


def make_fake(
    tg: anyio.abc.TaskGroup,
    *,
    seed: int = 1,
    faults: StripeFaults | None = None,
    record: Recorder | None = None,
) -> FakeStripe:
    return FakeStripe(
        SimClock(), random.Random(seed), tg, webhook_secret=SECRET, faults=faults, record=record
    )


def session_params(**overrides: Any) -> dict[str, Any]:
    params: dict[str, Any] = {
        "mode": "payment",
        "line_items": [
            {
                "price_data": {
                    "currency": "usd",
                    "unit_amount": 2500,
                    "product_data": {"name": "Program prog_1"},
                },
                "quantity": 2,
            }
        ],
        "metadata": {"purchase_id": "pur_1", "user_id": "user_1"},
        "payment_intent_data": {"metadata": {"purchase_id": "pur_1"}},
        "client_reference_id": "user_1",
        "success_url": "https://example.test/success",
        "cancel_url": "https://example.test/cancel",
    }
    params.update(overrides)
    return params
