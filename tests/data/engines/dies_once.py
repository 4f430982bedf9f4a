"""The reference engine, except that it kills its own process once, inside a Dask worker.

The first run (of all runs sharing the marker file named by $PAYSIM_DIE_ONCE) that creates a
purchase in a Dask worker process exits that process on the spot: a worker lost mid-sweep, for
the cluster tests. Anywhere else, and every other time, it is the reference engine, so its
histories are the reference's.
"""

from __future__ import annotations

import os

from reference_impl.ports import Engine, EngineEnv, PurchaseResult
from reference_impl.reference_engine import ReferenceEngine


def _in_dask_worker() -> bool:
    try:
        from distributed import get_worker

        get_worker()
    except (ImportError, ValueError):
        return False
    return True


def _first_to_die(marker: str) -> bool:
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


class DiesOnce(ReferenceEngine):
    async def create_purchase(
        self, user_id: str, program_id: str, class_rep: bool
    ) -> PurchaseResult:
        marker = os.environ.get("PAYSIM_DIE_ONCE")
        if marker and _in_dask_worker() and _first_to_die(marker):
            os._exit(17)
        return await super().create_purchase(user_id, program_id, class_rep)


def factory(env: EngineEnv) -> Engine:
    return DiesOnce(env)
