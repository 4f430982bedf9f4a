"""The reference engine, with one sweep at a time across the deployment (as a cron job takes a
lease): a sweep that finds another one running leaves the work to it.

A correct engine, and a common design. It is here for the harness's liveness judgement: while a
stalled sweep holds the lease, the sweep the liveness phase asks for does nothing, and the run
is not quiet until the stalled one has finished.
"""

from __future__ import annotations

from reference_impl.locks import LockTimeout
from reference_impl.ports import Engine, EngineEnv
from reference_impl.reference_engine import ReferenceEngine


class OneSweeper(ReferenceEngine):
    async def reconcile(self) -> None:
        try:
            async with self.env.locks.hold("sweeper", wait_timeout=0.0):
                await super().reconcile()
        except LockTimeout:
            return  # another sweep is running: it does this work


def factory(env: EngineEnv) -> Engine:
    return OneSweeper(env)
