"""Engine-facing clock over the running event loop's clock: virtual under MockClock, real otherwise."""

from __future__ import annotations

from dataclasses import dataclass

import anyio
import trio

from simulator import virtual_time

#: 2026-01-01T00:00:00Z: simulated runs start here so histories do not depend on the wall clock
SIM_EPOCH = 1_767_225_600.0


@dataclass
class SimClock:
    """`now()` = epoch + seconds since the run started on the event loop's clock.

    Virtual runs start at SIM_EPOCH; wall-clock runs pass `epoch=time.time()`. `origin` is the
    loop clock's reading at the start (trio's real clock has an arbitrary offset).
    """

    epoch: float = SIM_EPOCH
    origin: float = 0.0

    def now(self) -> float:
        return self.epoch + self.elapsed()

    def elapsed(self) -> float:
        """Seconds since the run started, used to stamp the history and schedule the run.

        Read tens of times per purchase: on trio (every simulation) straight from trio, else
        through anyio's backend dispatch."""
        try:
            return trio.current_time() - self.origin
        except RuntimeError:  # not in a trio run (asyncio)
            return anyio.current_time() - self.origin

    async def sleep_until(self, at: float) -> None:
        """Sleep until `at` seconds after the start (no-op if that is past). Simulations only:
        they run on trio."""
        delay = at - self.elapsed()
        if delay > 0:
            await virtual_time.sleep(delay)
