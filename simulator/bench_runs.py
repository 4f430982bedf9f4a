"""Whole-simulation benchmarks: throughput, profile, peak memory, virtual-time compression, sweeps.

Throughput and memory runs each happen in a fresh child process (`python -m
simulator.bench_runs ...`, JSON on stdout), so that one run's heap, imports and caches do not
flatter or burden the next, and `ru_maxrss` is that run's own peak. The clock starts after the
imports and a small warm-up run: the figure is simulation speed, not interpreter start-up.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from simulator.bench_scenarios import purchases_scenario, seat_scenario

#: a small run first, in the same process, so that lazy imports are not timed
WARM_UP_PURCHASES = 20


def child_run(
    purchases: int, faults: bool, profile: bool, seat_limit: int | None = None
) -> dict[str, Any]:
    """One simulated run in this process (the child side); `seat_limit`: a seat-scaling run."""
    from simulator.run import simulate

    if seat_limit is None:
        scenario = purchases_scenario(purchases, faults=faults)
    else:
        scenario = seat_scenario(purchases, limit=seat_limit)
    # the SDK imports its resource modules on first use: time the simulation, not the imports
    simulate(purchases_scenario(WARM_UP_PURCHASES, faults=faults), 1, "reference", None)
    with tempfile.TemporaryDirectory(prefix="paysim-bench-") as tmp:
        started, cpu = time.perf_counter(), time.process_time()
        if profile:
            from simulator.bench_floors import trio_counts
            from simulator.bench_profile import entry_points, fold, top_functions
            from simulator.bench_profile import profile as profiled

            result, stats = profiled(lambda: simulate(scenario, 1, "reference", Path(tmp)))
        else:
            result = simulate(scenario, 1, "reference", Path(tmp))
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
        history_bytes = (Path(tmp) / "history.jsonl").stat().st_size
        sdk_calls = count_sdk_calls(Path(tmp) / "history.jsonl")
    out: dict[str, Any] = {
        "scenario": scenario.name,
        "purchases": purchases,
        "faults": faults,
        "wall_s": wall,
        "cpu_s": cpu,
        "virtual_s": result.virtual_s,
        "history_lines": result.history_lines,
        "history_bytes": history_bytes,
        "history_sha256": result.history_sha256,
        "quiescent": result.quiescent,
        "counts": result.counts,
        "sdk_calls": sdk_calls,
        "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    if profile:
        buckets, total = fold(stats)
        out["profile"] = {
            "trio_counts": trio_counts(stats.stats),  # type: ignore[attr-defined]
            "total_s": total,
            "buckets": [b.as_dict(total) for b in buckets],
            "top": top_functions(stats, 15),
            "entry_points": entry_points(stats),
        }
    return out


def count_sdk_calls(history: Path) -> dict[str, int]:
    """Requests the engine sent through the SDK (every attempt the wire saw, by method) and
    webhook deliveries the engine verified, read off the history."""
    counts = {"POST": 0, "GET": 0, "webhook.attempt": 0}
    with history.open("rb") as lines:
        for line in lines:
            if b'"type":"stripe.request"' in line:
                method = json.loads(line)["method"]
                counts[method] = counts.get(method, 0) + 1
            elif b'"type":"webhook.attempt"' in line:
                counts["webhook.attempt"] += 1
    return {
        "posts": counts["POST"],
        "gets": counts["GET"],
        "verifications": counts["webhook.attempt"],
    }


def run_in_child(
    purchases: int, *, faults: bool = True, profile: bool = False, seat_limit: int | None = None
) -> dict[str, Any]:
    """`child_run` in a fresh interpreter; raises with the child's stderr if it fails."""
    cmd = [sys.executable, "-m", "simulator.bench_runs", str(purchases)]
    cmd += [] if faults else ["--no-faults"]
    cmd += ["--profile"] if profile else []
    cmd += [] if seat_limit is None else ["--seat-limit", str(seat_limit)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"bench child {cmd[3:]} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# ---- virtual-time compression


def retry_schedule(deliveries: int) -> dict[str, Any]:
    """Wall time to play Stripe's live retry schedule (3 days) for `deliveries` events whose
    endpoint always answers 500, until every one is given up."""
    import random

    import anyio
    import trio.testing

    from simulator.clock import SimClock
    from simulator.fake_stripe import FakeStripe, WebhookDelivery, WebhookPolicy

    stats: dict[str, Any] = {}

    async def always_500(payload: bytes, signature: str) -> int:
        return 500

    async def main() -> None:
        clock = SimClock()
        async with anyio.create_task_group() as tg:
            fake = FakeStripe(clock, random.Random(1), tg, live_mode=True)
            delivery = WebhookDelivery(
                fake, always_500, random.Random(2), tg, policy=WebhookPolicy.live()
            )
            for n in range(deliveries):
                delivery.deliver(_event(n))
            while not delivery.idle():
                await anyio.sleep(3600.0)
            stats.update(
                virtual_s=clock.elapsed(),
                attempts=delivery.stats.attempts,
                given_up=delivery.stats.given_up,
            )
            fake.stop()
            tg.cancel_scope.cancel()

    started = time.perf_counter()
    options = {"clock": trio.testing.MockClock(autojump_threshold=0)}
    anyio.run(main, backend="trio", backend_options=options)
    stats["wall_s"] = time.perf_counter() - started
    stats["deliveries"] = deliveries
    return stats


def _event(n: int) -> dict[str, Any]:
    session = {"id": f"cs_bench_{n:06d}", "object": "checkout.session", "status": "complete"}
    return {
        "id": f"evt_bench_{n:06d}",
        "object": "event",
        "api_version": "bench",
        "created": 0,
        "data": {"object": session},
        "livemode": True,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": "checkout.session.completed",
    }


# ---- sweeps


def sweep_timing(purchases: int, seeds: list[int], workers: int) -> dict[str, Any]:
    """Wall time of `sweep.sweep` over `seeds` (run and judged) with `workers` processes.

    The clock covers the whole sweep, worker start-up and exit included; with one worker the
    runs happen in this process, as `paysim explore --workers 1` does. Beside it, to tell the
    parts apart on a busy machine: each run's own simulation time (from its summary), and the
    wall time of a sweep of one-purchase runs on as many workers, measured after the real one
    (so it warms nothing for it): the fixed cost a sweep pays whatever its size.
    """
    import os

    from simulator.sweep import sweep

    scenario = purchases_scenario(purchases)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="paysim-bench-sweep-") as tmp:
        started = time.perf_counter()
        summaries = list(sweep(scenario, seeds, "reference", workers=workers, out_dir=Path(tmp)))
        wall = time.perf_counter() - started
    load_after = os.getloadavg()[0]
    started = time.perf_counter()
    list(sweep(purchases_scenario(1), seeds[:workers], "reference", workers=workers))
    fixed = time.perf_counter() - started
    runs_s = [s["wall_s"] for s in summaries]
    return {
        "wall_s": wall,
        "workers": workers,
        "runs": len(summaries),
        "runs_sim_s": round(sum(runs_s), 3),
        "slowest_run_sim_s": max(runs_s),
        "fixed_s": round(fixed, 3),
        "load_avg": [round(load_before, 2), round(load_after, 2)],
        "verdicts": sorted({s["verdict"] for s in summaries}),
        "sha256": [s["history_sha256"][:12] for s in summaries],
    }


# ---- time to verdict


def time_command(args: list[str]) -> dict[str, Any]:
    """Wall and CPU time (its own and its children's) of one `paysim ARGS` in a fresh process."""
    import os

    cmd = [sys.executable, "-c", "from simulator.cli import main; main()", *args]
    load_before = os.getloadavg()[0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode not in (0, 1, 3):
        raise RuntimeError(f"paysim {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {
        "args": args,
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "exit_code": done.returncode,
        "load_avg": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }


def one_scenario_suite(folder: Path) -> Path:
    """A suite folder holding one small benchmark scenario (the smoke test's suite)."""
    from simulator.scenario_file import scenario_to_toml

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "bench.toml").write_text(
        scenario_to_toml(purchases_scenario(5, faults=False)), encoding="utf-8"
    )
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description="one benchmark run (used by simulator.bench)")
    parser.add_argument("purchases", type=int)
    parser.add_argument("--no-faults", action="store_true")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument(
        "--seat-limit",
        type=int,
        default=None,
        help="a seat-scaling run: programs of this many seats",
    )
    args = parser.parse_args()
    result = child_run(args.purchases, not args.no_faults, args.profile, args.seat_limit)
    print(json.dumps(result, default=str))


if __name__ == "__main__":
    main()
