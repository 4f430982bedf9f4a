"""`python -m simulator.bench OUT_DIR` (`make bench`): paysim's performance figures, in one run.

Writes OUT_DIR/bench.json and OUT_DIR/bench.md. Every figure comes from this run on this
machine, next to a peer measured the same way, so a figure is never compared with a number from
another day or another machine. The whole run is kept under fifteen minutes: the largest memory run
is sized from the measured throughput, and the report says what was actually run.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from reference_impl.embedded_spill import DEFAULT_HOT
from simulator import bench_floors, bench_locks, bench_runs
from simulator.bench_report import Report, judged
from simulator.bench_scenarios import SEATS, SMALL_LIMIT

T = TypeVar("T")

#: simulated purchases per CPU-second on the full path (issue 16)
CPU_RATE_TARGET = 1_000
#: share of a purchase's CPU that the SDK and trio floors account for (issue 16)
EFFICIENCY_TARGET = 0.5

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
#: a long run is slower per purchase than the 10,000 one (reconcile scans and the heap grow with
#: the store): measured 0.94 at 30,000, 0.70 at 100,000; the memory run is sized with this and a
#: margin, to stay in budget
LARGE_RUN_SLOWDOWN = 0.7
#: peak RSS of the 100,000-purchase run over the 10,000 one's (issue 16)
PEAK_RSS_RATIO_TARGET = 1.5
BUDGET_MARGIN_S = 30.0


@dataclass(frozen=True)
class Sizes:
    """What each section runs; `full()` is `make bench`, `tiny()` is the smoke test's."""

    purchases: int = 10_000
    #: the throughput run is repeated and the least disturbed (least CPU) kept, as each floor
    #: is the best of its rounds: a floor over one noisy run would understate efficiency
    throughput_trials: int = 3
    profile_purchases: int = 2_000
    sdk_calls: int = 2_000
    trio_ops: int = 40_000
    memory_purchases: int = 100_000
    #: class-rep buyers in each seat-scaling run (bench_scenarios.SEATS seats)
    seat_purchases: int = 10_000
    deliveries: int = 1_000
    lock_ops: int = 100_000
    contended_tasks: int = 100
    contended_rounds: int = 200
    redis_ops: int = 4_000
    redis_tasks: int = 32
    #: many short runs, as a real sweep is: the fixed start-up of the 2-worker sweep (~0.75 s of
    #: worker imports) stays a small part of it even as runs get faster, and the idle tail
    #: (one worker finishing its last run alone) is short
    sweep_purchases: int = 600
    sweep_seeds: int = 20
    sweep_trials: int = 2
    #: `--cluster` on a running 2-worker cluster against `--workers 2` (simulator.bench_cluster)
    cluster_seeds: int = 40
    cluster_purchases: int = 200
    cluster_trials: int = 2
    cluster_local: bool = True  # also time `--cluster local:2`, which starts its own cluster
    #: the suite `paysim suite` and `paysim mutants --suite` run; None: a one-scenario suite
    verdict_suite: str | None = "scenarios/ci"
    #: --workers for them; None: the command's default (one per CPU)
    verdict_workers: int | None = None
    budget_s: float = 900.0

    @classmethod
    def full(cls) -> Sizes:
        return cls()

    @classmethod
    def tiny(cls) -> Sizes:
        return cls(
            purchases=40,
            throughput_trials=2,
            profile_purchases=20,
            sdk_calls=20,
            trio_ops=200,
            memory_purchases=80,
            seat_purchases=40,
            deliveries=10,
            lock_ops=200,
            contended_tasks=5,
            contended_rounds=5,
            redis_ops=40,
            redis_tasks=4,
            sweep_purchases=20,
            sweep_seeds=2,
            sweep_trials=1,
            cluster_seeds=2,
            cluster_purchases=5,
            cluster_trials=1,
            cluster_local=False,
            verdict_suite=None,
            verdict_workers=1,
            budget_s=120.0,
        )


class Progress:
    def __init__(self, stream: Any = sys.stderr) -> None:
        self.started = time.perf_counter()
        self.stream = stream

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def say(self, message: str) -> None:
        print(f"[{self.elapsed():5.0f}s] {message}", file=self.stream, flush=True)

    def step(self, title: str, fn: Callable[[], T]) -> T:
        self.say(f"{title} ... (load average {os.getloadavg()[0]:.2f})")
        started = time.perf_counter()
        result = fn()
        self.say(f"{title}: done in {time.perf_counter() - started:.1f}s")
        return result


Section = Callable[[Report, Sizes, str | None, Progress], None]


def run(
    out_dir: Path,
    sizes: Sizes,
    redis_url: str | None,
    progress: Progress,
    only: Collection[str] | None = None,
) -> Report:
    """Every section (or those named in `only`, in their usual order) into one report."""
    report = Report()
    for name, section in SECTIONS.items():
        if only is None or name in only:
            section(report, sizes, redis_url, progress)
    report.wall_s = progress.elapsed()
    report.write(out_dir)
    return report


# ---- 1. throughput and profile


def _throughput(report: Report, sizes: Sizes, progress: Progress) -> None:
    n, trials = sizes.purchases, sizes.throughput_trials
    runs = [
        progress.step(
            f"1/6 throughput: {n:,} purchases, CI fault mix, one process (trial {i}/{trials})",
            lambda: bench_runs.run_in_child(n),
        )
        for i in range(1, trials + 1)
    ]
    run = min(runs, key=lambda r: r["cpu_s"])
    cpu_rates = sorted(n / r["cpu_s"] for r in runs)
    same_history = len({r["history_sha256"] for r in runs}) == 1
    report.sections["throughput"] = {
        **run,
        "trials": [{"wall_s": r["wall_s"], "cpu_s": r["cpu_s"]} for r in runs],
        "same_history": same_history,
    }
    rate, cpu_rate = n / run["wall_s"], n / run["cpu_s"]
    report.add(
        judged(
            "purchases_per_s",
            f"simulated purchases per wall-second ({n:,}, CI fault mix)",
            rate,
            "/s",
            target=f"≥ {CPU_RATE_TARGET:,} per CPU-second",
            ok=lambda v: v >= CPU_RATE_TARGET,
            judged_on="peer",
            peer_label="per CPU-second",
            peer_value=cpu_rate,
            ratio_label="per CPU-second, of the target",
            ratio=cpu_rate / CPU_RATE_TARGET,
            note=(
                f"the least CPU of {trials} identical runs "
                f"({', '.join(f'{r:,.0f}' for r in cpu_rates)} per CPU-second; same history "
                f"bytes: {'yes' if same_history else 'NO'}); "
                f"{run['wall_s']:.1f} s wall, {run['cpu_s']:.1f} s CPU for {run['virtual_s']:,.0f} "
                f"virtual s; {run['history_lines']:,} history lines; quiescent={run['quiescent']}"
            ),
        )
    )
    p = sizes.profile_purchases
    profiled = progress.step(
        f"1/6 profile: {p:,} purchases under cProfile",
        lambda: bench_runs.run_in_child(p, profile=True),
    )
    report.sections["profile"] = {
        "what": f"cProfile, {p:,} purchases, CI fault mix",
        "purchases": p,
        **profiled["profile"],
        "how": (
            "Self time per bucket includes the stdlib and builtins the bucket calls. cProfile "
            f"slows the run down ({profiled['wall_s']:.1f} s under the profiler); shares matter, "
            "not seconds. Entry points are inclusive and overlap each other."
        ),
    }
    _floors(report, sizes, progress)


def _seat_scaling(report: Report, sizes: Sizes, progress: Progress) -> None:
    """The same buyers and seats, in one program of 10,000 seats or 100 programs of 100: the
    cost of a seat operation must not grow with the seats held."""
    n = sizes.seat_purchases
    runs = {
        limit: progress.step(
            f"seat scaling: {n:,} class-rep purchases, programs of {limit:,} seats",
            lambda limit=limit: bench_runs.run_in_child(n, seat_limit=limit),
        )
        for limit in (SEATS, SMALL_LIMIT)
    }
    big, small = runs[SEATS], runs[SMALL_LIMIT]
    report.sections["seat_scaling"] = runs
    big_rate, small_rate = n / big["cpu_s"], n / small["cpu_s"]
    held = big["counts"]["fulfilments"]
    report.add(
        judged(
            "seat_scaling",
            f"purchases per CPU-second, {n:,} class-rep buyers, one program of {SEATS:,} seats",
            big_rate,
            "/s",
            peer_label=f"{SEATS // SMALL_LIMIT} programs of {SMALL_LIMIT} seats",
            peer_value=small_rate,
            ratio_label="big / small",
            ratio=big_rate / small_rate,
            target="≥ 0.9",
            ok=lambda r: r >= 0.9,
            judged_on="ratio",
            note=(
                f"{held:,} of the {SEATS:,} seats held at the end of the one-program run; CPU "
                f"{big['cpu_s']:.1f} s against {small['cpu_s']:.1f} s; no faults, same arrivals"
            ),
        )
    )


def _floors(report: Report, sizes: Sizes, progress: Progress) -> None:
    """What the full SDK path and trio alone cost a purchase: floors under figure 1."""
    run, profiled = report.sections["throughput"], report.sections["profile"]
    sdk = progress.step(
        f"1/6 floors: stripe SDK alone, {sizes.sdk_calls:,} creates, retrieves, verifications",
        lambda: bench_floors.measure_sdk(sizes.sdk_calls),
    )
    trio_ = progress.step(
        f"1/6 floors: trio alone, {sizes.trio_ops:,} spawns, sleeps, scopes and switches",
        lambda: bench_floors.measure_trio(sizes.trio_ops),
    )
    calls = {k: v / run["purchases"] for k, v in run["sdk_calls"].items()}
    ops = {k: v / profiled["purchases"] for k, v in profiled["trio_counts"].items()}
    sdk_us = sdk.per_purchase_us(calls["posts"], calls["gets"], calls["verifications"])
    trio_us = trio_.per_purchase_us(ops)
    whole_us = run["cpu_s"] / run["purchases"] * 1e6
    budget_us = 1e6 / CPU_RATE_TARGET
    report.sections["floors"] = {
        "sdk_us_per_call": {
            "create": sdk.create_us,
            "retrieve": sdk.retrieve_us,
            "verify": sdk.verify_us,
        },
        "sdk_calls_per_purchase": calls,
        "trio_us_per_op": {
            "spawn": trio_.spawn_us,
            "sleep": trio_.sleep_us,
            "scope": trio_.scope_us,
            "switch": trio_.switch_us,
        },
        "trio_ops_per_purchase": ops,
        "sdk_us": sdk_us,
        "trio_us": trio_us,
        "whole_us": whole_us,
        "ceiling_per_s": 1e6 / (sdk_us + trio_us),
    }
    for key, label, value, note in (
        (
            "sdk_floor_us",
            "stripe SDK alone, CPU per purchase",
            sdk_us,
            f"{calls['posts']:.2f} POSTs x {sdk.create_us:.0f} µs + {calls['gets']:.2f} GETs x "
            f"{sdk.retrieve_us:.0f} µs + {calls['verifications']:.2f} webhook verifications x "
            f"{sdk.verify_us:.0f} µs per purchase (an HTTP client that answers at once)",
        ),
        (
            "trio_floor_us",
            "trio alone, CPU per purchase",
            trio_us,
            f"{ops['spawns']:.1f} tasks x {trio_.spawn_us:.1f} µs + {ops['sleeps']:.1f} sleeps x "
            f"{trio_.sleep_us:.1f} µs + {ops['other_scopes']:.1f} cancel scopes x "
            f"{trio_.scope_us:.1f} µs + {ops['other_switches']:.1f} task switches x "
            f"{trio_.switch_us:.1f} µs per purchase (counts from the profiled run)",
        ),
    ):
        report.add(
            judged(
                key,
                label,
                value,
                "µs",
                target="reported (a floor under figure 1)",
                ok=lambda _: True,
                judged_on="none",
                peer_label="whole simulation",
                peer_value=whole_us,
                ratio_label="share",
                ratio=value / whole_us,
                note=f"{note}; CPU, best of 3, nothing else running in that process",
            )
        )
        report.figures[-1].met = None
    floors_us = sdk_us + trio_us
    room_us = budget_us - floors_us
    report.add(
        judged(
            "efficiency",
            "efficiency: SDK + trio floors / CPU per purchase",
            floors_us / whole_us,
            "",
            target=f"≥ {EFFICIENCY_TARGET}",
            ok=lambda v: v >= EFFICIENCY_TARGET,
            peer_label="CPU per purchase",
            peer_value=whole_us,
            note=f"floors {sdk_us:.0f} µs (SDK) + {trio_us:.0f} µs (trio) of {whole_us:,.0f} µs",
        )
    )
    report.notes.append(
        f"{CPU_RATE_TARGET:,} purchases per CPU-second leaves {budget_us:.0f} µs of CPU per "
        "purchase. The stripe SDK alone "
        f"takes {sdk_us:.0f} µs and trio alone {trio_us:.0f} µs of the {whole_us:,.0f} µs a "
        f"purchase costs today: {floors_us:.0f} µs before the fake Stripe, the store, the "
        "engine or the history do anything, a ceiling of "
        f"{1e6 / floors_us:,.0f} purchases/s on this path. "
        + (
            f"To reach {CPU_RATE_TARGET:,}/s everything else, {whole_us - floors_us:,.0f} µs today, would have "
            f"to fit in {room_us:.0f} µs."
            if room_us > 0
            else "There is no room left for the rest at all."
        )
    )


# ---- 2. virtual-time compression


def _virtual_time(report: Report, sizes: Sizes, progress: Progress) -> None:
    d = sizes.deliveries
    stats = progress.step(
        f"2/6 virtual time: 3-day retry schedule of {d:,} failing deliveries",
        lambda: bench_runs.retry_schedule(d),
    )
    report.sections["virtual_time"] = stats
    per_ms = stats["wall_s"] / d * 1000
    report.add(
        judged(
            "retry_schedule_wall_s",
            f"wall time, live retry schedule of {d:,} deliveries that fail",
            stats["wall_s"],
            "s",
            target="≤ 10 ms per 3-day schedule",
            ok=lambda _: per_ms <= 10,
            peer_label="virtual",
            peer_value=stats["virtual_s"],
            ratio_label="virtual / wall",
            ratio=stats["virtual_s"] / stats["wall_s"],
            note=(
                f"{per_ms:.2f} ms wall per event's schedule; {stats['attempts']:,} attempts, "
                f"{stats['given_up']:,} given up after {stats['virtual_s'] / 86400:.2f} virtual days"
            ),
        )
    )


# ---- 3. memory locks


def _memory_locks(report: Report, sizes: Sizes, progress: Progress) -> None:
    ours, peer = progress.step(
        f"3/6 memory locks: {sizes.lock_ops:,} uncontended acquire+release (trio)",
        lambda: bench_locks.memory_uncontended(sizes.lock_ops),
    )
    report.add(
        judged(
            "memory_lock_uncontended",
            "MemoryLockService uncontended acquire+release",
            ours.per_s,
            "/s",
            peer_label="dict of anyio.Lock",
            peer_value=peer.per_s,
            ratio_label="cost / peer's cost",
            ratio=peer.per_s / ours.per_s,
            target="≤ 1.5x the cost",
            ok=lambda r: r <= 1.5,
            judged_on="ratio",
            note="with honest statistics (HdrHistogram per grant and release) and fencing tokens",
        )
    )
    tasks, rounds = sizes.contended_tasks, sizes.contended_rounds
    ours, peer = progress.step(
        f"3/6 memory locks: {tasks} tasks on one key, {rounds} rounds each (trio)",
        lambda: bench_locks.memory_contended(tasks, rounds),
    )
    report.add(
        judged(
            "memory_lock_contended",
            f"MemoryLockService contended: {tasks} tasks on one key, grants",
            ours.per_s,
            "/s",
            peer_label="anyio.Lock",
            peer_value=peer.per_s,
            ratio_label="cost / peer's cost",
            ratio=peer.per_s / ours.per_s,
            target="none set (reported)",
            ok=lambda _: True,
            judged_on="none",
            note="each grant: FIFO hand-off, a per-waiter timeout scope, statistics",
        )
    )
    report.figures[-1].met = None


# ---- 4. Redis locks


def _redis_locks(report: Report, sizes: Sizes, redis_url: str | None, progress: Progress) -> None:
    url = redis_url or os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL
    missing = bench_locks.redis_available(url)
    if missing is not None:
        progress.say(f"4/6 Redis locks: skipped ({missing})")
        report.notes.append(f"Redis lock figures skipped: {missing}")
        for mode in ("sequential", "concurrent"):
            report.add(
                judged(
                    f"redis_lock_{mode}",
                    f"RedisLockService {mode} acquire+release",
                    None,
                    "/s",
                    target="no slower than redis-py's Lock",
                    ok=lambda _: True,
                    note=missing,
                )
            )
        return
    rates = progress.step(
        f"4/6 Redis locks: {sizes.redis_ops:,} acquire+release, sequential and "
        f"{sizes.redis_tasks} tasks, against redis-py's Lock",
        lambda: bench_locks.redis_locks(url, sizes.redis_ops, sizes.redis_tasks),
    )
    report.sections["redis_locks"] = {k: round(v.per_s, 1) for k, v in rates.items()}
    for mode, label in (
        ("sequential", "sequential, one key"),
        ("concurrent", f"{sizes.redis_tasks} tasks, a key each"),
    ):
        ours, peer = rates[f"fenced_{mode}"], rates[f"redis_py_{mode}"]
        report.add(
            judged(
                f"redis_lock_{mode}",
                f"RedisLockService acquire+release, {label}",
                ours.per_s,
                "/s",
                peer_label="redis.asyncio.lock.Lock",
                peer_value=peer.per_s,
                ratio_label="ours / peer",
                ratio=ours.per_s / peer.per_s,
                target="≥ 1.0 (no slower)",
                ok=lambda r: r >= 1.0,
                judged_on="ratio",
                note=f"Redis at {url}; ours adds a fencing token (Lua) and statistics",
            )
        )


# ---- 6. sweeps (run before the memory run: its size depends on the time left)


def _sweep(report: Report, sizes: Sizes, progress: Progress) -> None:
    """1 worker and 2 workers, alternately, `sweep_trials` times each; the speed-up is of the
    fastest of each (noise on a shared machine only ever adds time, as timeit assumes)."""
    seeds = list(range(1, sizes.sweep_seeds + 1))
    n = sizes.sweep_purchases
    trials: dict[int, list[dict[str, Any]]] = {1: [], 2: []}
    for trial in range(1, sizes.sweep_trials + 1):
        for workers in (1, 2):
            trials[workers].append(
                progress.step(
                    f"5/6 sweep {trial}/{sizes.sweep_trials}: {len(seeds)} seeds x {n} "
                    f"purchases, {workers} worker{'s' if workers > 1 else ''}",
                    lambda w=workers: bench_runs.sweep_timing(n, seeds, w),
                )
            )
    one, two = (min(trials[w], key=lambda t: t["wall_s"]) for w in (1, 2))
    report.sections["sweep"] = {"one_worker": one, "two_workers": two, "trials": trials}
    same = all(t["sha256"] == one["sha256"] for w in (1, 2) for t in trials[w])
    walls = " / ".join(
        ", ".join(f"{t['wall_s']:.1f}" for t in trials[w]) + f" s ({w} worker{'s' * (w > 1)})"
        for w in (1, 2)
    )
    # the most a sweep could gain if runs running side by side were as fast as runs alone
    slowdown = two["runs_sim_s"] / one["runs_sim_s"]
    report.add(
        judged(
            "sweep_speedup",
            f"sweep (paysim explore), {len(seeds)} seeds x {n} purchases, 2 workers (wall)",
            two["wall_s"],
            "s",
            peer_label="1 worker",
            peer_value=one["wall_s"],
            ratio_label="speed-up",
            ratio=one["wall_s"] / two["wall_s"],
            target="≥ 1.8x on 2 cores",
            ok=lambda r: r >= 1.8,
            judged_on="ratio",
            note=(
                f"fastest of {sizes.sweep_trials} alternating trials each ({walls}); each run "
                f"simulated and judged; same histories with 1 and 2 workers in every trial: "
                f"{same}. 1 worker runs in this process, as `--workers 1` does (no start-up); "
                "2 workers are spawned and timed from start to exit: a 1-purchase sweep on them "
                f"takes {two['fixed_s']:.2f} s (imports, first run, exit). The runs' own "
                f"simulation time, summed: {one['runs_sim_s']:.1f} s alone, "
                f"{two['runs_sim_s']:.1f} s two at a time ({slowdown:.2f}x: two processes on "
                "the two cores slow each other down, and other work on the machine slows "
                f"them more), which caps the speed-up at {2 / slowdown:.2f}x before any "
                "start-up is paid"
            ),
        )
    )


def _cluster(report: Report, sizes: Sizes, progress: Progress) -> None:
    from simulator import bench_cluster

    n, seeds = sizes.cluster_purchases, sizes.cluster_seeds
    result = progress.step(
        f"5/6 sweep on a cluster: {seeds} seeds x {n} purchases, --workers 2 and --cluster on a "
        "running 2-worker cluster" + (", then --cluster local:2" if sizes.cluster_local else ""),
        lambda: bench_cluster.overhead(n, seeds, sizes.cluster_trials, sizes.cluster_local),
    )
    report.sections["cluster"] = result
    pool, cluster, local = result["pool"], result["cluster"], result["local_cluster"]
    report.add(
        judged(
            "cluster_overhead",
            f"sweep on `--cluster` (a running 2-worker Dask cluster), {seeds} seeds x {n} "
            "purchases (wall)",
            cluster["wall_s"],
            "s",
            peer_label="--workers 2",
            peer_value=pool["wall_s"],
            ratio_label="overhead (cluster / pool - 1)",
            ratio=result["overhead"],
            target="≤ 15 %",
            ok=lambda r: r <= 0.15,
            judged_on="ratio",
            note=(
                f"fastest of {sizes.cluster_trials} alternating trials each (pool "
                f"{result['walls']['pool']} s from start to exit, workers spawned and "
                f"stopped; cluster {result['walls']['cluster']} s from connecting to the end: "
                f"connect and probe the engine on each worker {cluster['start_s']:.1f} s, jobs "
                f"{cluster['jobs_s']:.1f} s; the cluster itself started beforehand, as a "
                f"user's runs). {_local_cluster_note(local, result['local_cluster_overhead'])}"
                "Same histories in every sweep: "
                f"{result['same_histories']}; jobs retried: {cluster['retried']}. Load average "
                f"before and after each sweep, in order: {result['load_avg']}"
            ),
        )
    )


def _local_cluster_note(local: dict[str, Any] | None, overhead: float | None) -> str:
    if local is None or overhead is None:
        return "`--cluster local:2` not timed at these sizes. "
    return (
        "`--cluster local:2`, which also starts and stops a scheduler and 2 worker processes: "
        f"{local['wall_s']:.1f} s ({local['start_s']:.1f} s to start and probe, "
        f"{local['stop_s']:.1f} s to stop), overhead {overhead:+.0%}. "
    )


# ---- time to verdict: the CI suite and its mutation test, as a user runs them

#: measured before issue 16 on the CI machine (load average 7), for comparison in bench.md
EARLIER_SUITE_WALL_S = 70.0
EARLIER_MUTANTS_WALL_S = 93.0


def _time_to_verdict(report: Report, sizes: Sizes, progress: Progress) -> None:
    with tempfile.TemporaryDirectory(prefix="paysim-bench-verdict-") as tmp:
        suite = sizes.verdict_suite or str(bench_runs.one_scenario_suite(Path(tmp) / "suite"))
        workers = [] if sizes.verdict_workers is None else ["--workers", str(sizes.verdict_workers)]
        runs = {
            key: progress.step(
                f"time to verdict: paysim {' '.join(args)}",
                lambda args=args: bench_runs.time_command(args),
            )
            for key, args in (
                ("suite", ["suite", suite, "--out", str(Path(tmp) / "out"), *workers]),
                ("mutants", ["mutants", "--suite", suite, *workers]),
            )
        }
    report.sections["time_to_verdict"] = {"suite_dir": suite, **runs}
    for key, earlier in (("suite", EARLIER_SUITE_WALL_S), ("mutants", EARLIER_MUTANTS_WALL_S)):
        run = runs[key]
        command = "paysim suite" if key == "suite" else "paysim mutants --suite"
        report.add(
            judged(
                f"{key}_wall_s",
                f"time to verdict: `{command} {suite}` (wall)",
                run["wall_s"],
                "s",
                peer_label="before issue 16",
                peer_value=earlier if sizes.verdict_suite else None,
                ratio_label="earlier / now",
                ratio=earlier / run["wall_s"] if sizes.verdict_suite else None,
                target="≥ 2x (halved)",
                ok=lambda r: r >= 2.0,
                judged_on="ratio",
                note=(
                    f"exit code {run['exit_code']}; CPU {run['cpu_s']:.1f} s in all its "
                    f"processes; load average {run['load_avg'][0]} before, "
                    f"{run['load_avg'][1]} after. The earlier figure was measured on the CI "
                    "machine at load average 7 (not in this run)"
                ),
            )
        )


# ---- 5. peak memory


def _memory(report: Report, sizes: Sizes, progress: Progress) -> None:
    from simulator import bench_memory

    b_small, b_large = sizes.profile_purchases, 4 * sizes.profile_purchases
    by_component = progress.step(
        f"6/6 memory by component: {b_small:,} and {b_large:,} purchases, fresh processes",
        lambda: bench_memory.compare(b_small, b_large),
    )
    kb_per_purchase = by_component["kb_per_purchase"]
    small = report.sections.get("throughput")
    if small is None:  # `--only memory`: the peer run the throughput section would have made
        small = progress.step(
            f"6/6 peak memory: {sizes.purchases:,} purchases, CI fault mix, fresh process",
            lambda: bench_runs.run_in_child(sizes.purchases),
        )
    rate = small["purchases"] / small["wall_s"]
    left = sizes.budget_s - progress.elapsed() - BUDGET_MARGIN_S
    wanted = sizes.memory_purchases
    fits = int(rate * LARGE_RUN_SLOWDOWN * left)
    step = max(1, small["purchases"])
    n = wanted if fits >= wanted else max(2 * step, fits // step * step)
    if n < wanted:
        note = (
            f"{wanted:,} purchases would take about {wanted / rate:.0f} s at the measured "
            f"{rate:.0f}/s, past the {sizes.budget_s:.0f} s budget: ran {n:,} instead, same mix"
        )
        report.notes.append(note)
        progress.say(note)
    else:
        note = ""
    large = progress.step(
        f"6/6 peak memory: {n:,} purchases, CI fault mix, fresh process",
        lambda: bench_runs.run_in_child(n),
    )
    report.sections["memory"] = {
        "small": _mem(small),
        "large": _mem(large),
        "kb_per_purchase_by_component": kb_per_purchase,
        "by_component_runs": [b_small, b_large],
    }
    grow_kb = (large["maxrss_mb"] - small["maxrss_mb"]) * 1024 / max(1, n - small["purchases"])
    report.add(
        judged(
            "peak_rss",
            f"peak RSS, {n:,}-purchase run",
            large["maxrss_mb"],
            "MB",
            peer_label=f"{small['purchases']:,}-purchase run",
            peer_value=small["maxrss_mb"],
            ratio_label="large / small",
            ratio=large["maxrss_mb"] / small["maxrss_mb"],
            target=f"≤ {PEAK_RSS_RATIO_TARGET}",
            ok=lambda r: r <= PEAK_RSS_RATIO_TARGET,
            judged_on="ratio",
            note=" ".join(
                filter(
                    None,
                    [
                        note,
                        f"{grow_kb:.1f} KB more RSS per purchase. Where the memory goes, retained "
                        f"at the end of a run, KB per purchase ({b_small:,} vs {b_large:,} "
                        f"purchases): {bench_memory.describe(kb_per_purchase)}. On disk: the "
                        "embedded store's documents but the most recently used of each "
                        f"collection ({DEFAULT_HOT:,} of each, embedded_spill), settled fake Stripe "
                        "state (events, idempotent replies, finished sessions), the harness's "
                        "ledgers and the history "
                        f"({large['history_bytes'] / 1e6:.0f} MB of history). What the longer "
                        "run holds more of, up to a plateau: its live state (the Checkout "
                        "Sessions still open until they expire, the customers still on their "
                        "way) and the store's full set of documents in memory for the "
                        "collections the shorter run had not filled. The reconciler reads the "
                        "receipts owed since the email outage (a quarter of the workload) a "
                        "page at a time.",
                        f"That run: {n / large['wall_s']:.0f} purchases/s.",
                    ],
                )
            ),
        )
    )


def _mem(run: dict[str, Any]) -> dict[str, Any]:
    keys = ("purchases", "maxrss_mb", "wall_s", "history_bytes", "history_lines")
    return {k: run[k] for k in keys}


def _without_redis(section: Callable[[Report, Sizes, Progress], None]) -> Section:
    return lambda report, sizes, _redis_url, progress: section(report, sizes, progress)


#: the sections in the order they run (`--only` picks some: `--only memory` is the peak-RSS
#: figure alone, with its own 10,000-purchase peer run)
SECTIONS: dict[str, Section] = {
    "throughput": _without_redis(_throughput),
    "seat_scaling": _without_redis(_seat_scaling),
    "virtual_time": _without_redis(_virtual_time),
    "memory_locks": _without_redis(_memory_locks),
    "redis_locks": _redis_locks,
    "sweep": _without_redis(_sweep),
    "cluster": _without_redis(_cluster),
    "time_to_verdict": _without_redis(_time_to_verdict),
    "memory": _without_redis(_memory),
}


def _sections(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in SECTIONS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown section {', '.join(unknown) or repr(text)}: choose from {', '.join(SECTIONS)}"
        )
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simulator.bench", description=__doc__)
    parser.add_argument("out_dir", type=Path, nargs="?", default=Path("reports/bench"))
    parser.add_argument(
        "--redis-url", default=None, help=f"default: $REDIS_URL or {DEFAULT_REDIS_URL}"
    )
    parser.add_argument("--tiny", action="store_true", help="tiny sizes (smoke test), seconds")
    parser.add_argument(
        "--only",
        type=_sections,
        default=None,
        metavar="SECTION[,SECTION]",
        help=f"run only these sections: {', '.join(SECTIONS)}",
    )
    args = parser.parse_args(argv)
    progress = Progress()
    sizes = Sizes.tiny() if args.tiny else Sizes.full()
    report = run(args.out_dir, sizes, args.redis_url, progress, args.only)
    progress.say(f"wrote {args.out_dir / 'bench.json'} and {args.out_dir / 'bench.md'}")
    print((args.out_dir / "bench.md").read_text())
    missed = [f.key for f in report.figures if f.met is False]
    if missed:
        progress.say(f"targets missed: {', '.join(missed)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
