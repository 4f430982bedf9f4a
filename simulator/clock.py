"""Engine-facing clock over the running event loop's clock: virtual under MockClock, real otherwise."""

from __future__ import annotations

from dataclasses import dataclass

import anyio

#: 2026-01-01T00:00:00Z: simulated runs start here so histories do not depend on the wall clock
SIM_EPOCH = 1_767_225_600.0


@dataclass
class SimClock:
    """`now()` = epoch + the loop's clock. For wall-clock runs pass `epoch=time.time() - loop time`."""

    epoch: float = SIM_EPOCH

    def now(self) -> float:
        return self.epoch + anyio.current_time()

    def elapsed(self) -> float:
        """Seconds since the run started (the loop clock), used to stamp the history."""
        return anyio.current_time()
