"""How the simulator starts its tasks: in trio nurseries, not anyio task groups.

The simulator only ever runs on trio (virtual time is trio's MockClock), and a run starts tens of
thousands of short tasks (a server side per Stripe request, a task per webhook attempt, one per
visitor). anyio's task group wraps each in a handle, a cancel scope and an event, which cost as
much again as the task itself; a trio nursery starts the same task in the same order, so the
schedule (and the history) is unchanged. The engine (`reference_impl`) stays on anyio: it must run
on any backend.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import trio


class Spawner(Protocol):
    """What the simulator's parts need of a nursery (trio's, or an anyio task group)."""

    def start_soon(
        self, async_fn: Callable[..., Awaitable[Any]], *args: Any, name: object = None
    ) -> None: ...


open_nursery = trio.open_nursery
