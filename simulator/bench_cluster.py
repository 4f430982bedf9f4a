"""The cost of `--cluster`: one sweep on a local 2-worker Dask cluster against `--workers 2`.

Both are timed as a user's command pays them, from start to exit: the process pool spawns its
workers and waits for them to exit; the cluster starts a scheduler and 2 worker processes,
probes the engine on every worker, runs the jobs and stops it all. The same seeds on both, and
the histories must be the same bytes. `python -m simulator.bench_cluster` measures it alone.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

from simulator.bench_scenarios import purchases_scenario
from simulator.sweep import sweep

#: the figure the issue asks for: 40 seeds, as many 2-worker sweeps are run in CI
SEEDS = 40
#: runs long enough that a sweep is mostly runs (a CI scenario run is ~20 ms; at that size any
#: executor's start-up is the whole sweep), short enough to keep `make bench` in budget
PURCHASES = 200


def pool_sweep(purchases: int, seeds: list[int]) -> dict[str, Any]:
    started = time.perf_counter()
    summaries = list(sweep(purchases_scenario(purchases), seeds, "reference", workers=2))
    return {"wall_s": time.perf_counter() - started, "sha256": _shas(summaries)}


def cluster_sweep(purchases: int, seeds: list[int]) -> dict[str, Any]:
    from simulator.cluster.pool import ClusterPool
    from simulator.cluster.session import open_session

    scenario = purchases_scenario(purchases)
    started = time.perf_counter()
    with open_session("local:2", "reference") as session, ClusterPool(session) as pool:
        ready = time.perf_counter()
        summaries = list(sweep(scenario, seeds, "reference", executor=pool))
        ran = time.perf_counter()
        retried = len(pool.retried)
    ended = time.perf_counter()
    return {
        "wall_s": ended - started,
        "start_s": round(ready - started, 3),  # scheduler, workers, engine probe
        "jobs_s": round(ran - ready, 3),
        "stop_s": round(ended - ran, 3),
        "retried": retried,
        "sha256": _shas(summaries),
    }


def _shas(summaries: list[dict[str, Any]]) -> list[str]:
    return [s["history_sha256"][:12] for s in sorted(summaries, key=lambda s: s["seed"])]


def overhead(purchases: int = PURCHASES, seeds: int = SEEDS) -> dict[str, Any]:
    """Pool first, then cluster; the load average before and after (the machine is shared)."""
    numbers = list(range(1, seeds + 1))
    load_before = os.getloadavg()[0]
    pool = pool_sweep(purchases, numbers)
    cluster = cluster_sweep(purchases, numbers)
    load_after = os.getloadavg()[0]
    return {
        "seeds": seeds,
        "purchases": purchases,
        "pool": pool,
        "cluster": cluster,
        "overhead": cluster["wall_s"] / pool["wall_s"] - 1,
        "same_histories": pool["sha256"] == cluster["sha256"],
        "load_avg": [round(load_before, 2), round(load_after, 2)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=SEEDS)
    parser.add_argument("--purchases", type=int, default=PURCHASES)
    args = parser.parse_args()
    result = overhead(args.purchases, args.seeds)
    for part in ("pool", "cluster"):
        result[part]["sha256"] = f"{len(result[part]['sha256'])} runs"
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
