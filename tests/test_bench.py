"""The benchmark machinery runs end to end on tiny sizes and writes valid bench.json / bench.md.

No timing is asserted here: figures depend on the machine; `make bench` reports them.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from simulator import bench
from simulator.bench_profile import OTHER, bucket_of

# ---- the bench


def test_tiny_bench_writes_a_complete_report(tmp_path: Path) -> None:
    progress_lines: list[str] = []

    class Capture:
        def write(self, text: str) -> None:
            progress_lines.append(text)

        def flush(self) -> None:
            pass

    out = tmp_path / "bench"
    report = bench.run(out, bench.Sizes.tiny(), None, bench.Progress(Capture()))
    data = json.loads((out / "bench.json").read_text())
    keys = {f["key"] for f in data["figures"]}
    assert keys == {
        "purchases_per_s",
        "seat_scaling",
        "sdk_floor_us",
        "trio_floor_us",
        "efficiency",
        "retry_schedule_wall_s",
        "memory_lock_uncontended",
        "memory_lock_contended",
        "redis_lock_sequential",
        "redis_lock_concurrent",
        "sweep_speedup",
        "cluster_overhead",
        "suite_wall_s",
        "mutants_wall_s",
        "peak_rss",
    }
    for figure in data["figures"]:
        assert figure["met"] in (True, False, None)
        if figure["key"].startswith("redis") and figure["value"] is None:
            continue  # no Redis here: skipped, with a note
        assert figure["value"] > 0, figure
    throughput = data["sections"]["throughput"]
    assert throughput["quiescent"] is True
    assert len(throughput["trials"]) == bench.Sizes.tiny().throughput_trials
    assert throughput["cpu_s"] == min(t["cpu_s"] for t in throughput["trials"])  # the best kept
    assert throughput["same_history"] is True  # the trials are the same run
    floors = data["sections"]["floors"]
    assert floors["sdk_calls_per_purchase"]["posts"] > 0  # read off the history
    assert floors["sdk_calls_per_purchase"]["verifications"] > 0
    assert floors["trio_ops_per_purchase"]["spawns"] > 0  # read off the profile
    assert floors["trio_ops_per_purchase"]["other_switches"] > 0
    assert 0 < floors["sdk_us"] + floors["trio_us"] < floors["whole_us"]  # parts of the whole
    verdict = data["sections"]["time_to_verdict"]
    assert verdict["suite"]["exit_code"] == 0  # the reference passes the one-scenario suite
    assert verdict["mutants"]["exit_code"] in (0, 1)  # one scenario cannot catch every mutant
    seat_runs = data["sections"]["seat_scaling"]
    assert {r["scenario"] for r in seat_runs.values()} == {
        "bench-seats-40-limit-10000",
        "bench-seats-40-limit-100",
    }
    assert all(r["quiescent"] and r["purchases"] == 40 for r in seat_runs.values())
    assert data["sections"]["virtual_time"]["given_up"] == bench.Sizes.tiny().deliveries
    sweep = data["sections"]["sweep"]
    assert sweep["one_worker"]["sha256"] == sweep["two_workers"]["sha256"]
    assert data["sections"]["cluster"]["same_histories"] is True
    buckets = data["sections"]["profile"]["buckets"]
    assert math.isclose(sum(b["self_pct"] for b in buckets), 100.0, abs_tol=1.0)
    markdown = (out / "bench.md").read_text()
    assert markdown.count("\n| ") >= len(report.figures) + 2  # header, rule, one row each
    assert all(f.label in markdown for f in report.figures)
    assert any("6/6" in line for line in progress_lines)


def test_profile_buckets_follow_the_source_path() -> None:
    assert bucket_of("/x/site-packages/stripe/_util.py").startswith("stripe")
    assert bucket_of("/x/site-packages/mongomock/collection.py").startswith("store")
    assert bucket_of("/w/reference_impl/memory_locks.py").startswith("locks")
    assert bucket_of("/w/reference_impl/reference_engine.py").startswith("engine")
    assert bucket_of("/w/simulator/fake_stripe/api.py").startswith("fake Stripe")
    assert bucket_of("/usr/lib/python3.11/json/encoder.py") == OTHER


def test_trio_counts_count_each_sleep_and_spawn_once() -> None:
    """cProfile counts every resumption of a coroutine as a call; the floor's counts must not."""
    import cProfile
    import pstats

    import trio
    import trio.testing

    from simulator.bench_floors import trio_counts

    async def sleeper() -> None:
        for _ in range(3):
            await trio.sleep(1.0)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sleeper)
            nursery.start_soon(sleeper)

    profiler = cProfile.Profile()
    profiler.runcall(trio.run, main, clock=trio.testing.MockClock(autojump_threshold=0))
    counts = trio_counts(pstats.Stats(profiler).stats)  # type: ignore[attr-defined]
    assert counts["sleeps"] == 6
    assert counts["spawns"] >= 2  # the two sleepers (and trio's own system tasks)
    assert counts["other_scopes"] >= 1  # the nursery's


def test_only_memory_runs_the_peak_rss_figure_with_its_own_peer(tmp_path: Path) -> None:
    """`--only memory`: the 100k ÷ 10k peak RSS figure alone (here tiny sizes), its peer run made
    by the memory section itself, written to bench.json under `peak_rss`."""
    import io
    from contextlib import redirect_stdout

    out = tmp_path / "bench"
    with redirect_stdout(io.StringIO()):
        assert bench.main([str(out), "--tiny", "--only", "memory"]) == 0
    data = json.loads((out / "bench.json").read_text())
    assert [f["key"] for f in data["figures"]] == ["peak_rss"]
    peak = data["figures"][0]
    memory = data["sections"]["memory"]
    sizes = bench.Sizes.tiny()
    assert memory["small"]["purchases"] == sizes.purchases
    assert memory["large"]["purchases"] == sizes.memory_purchases
    assert peak["value"] == memory["large"]["maxrss_mb"]
    assert peak["peer_value"] == memory["small"]["maxrss_mb"]
    assert peak["ratio"] == peak["value"] / peak["peer_value"]
    assert peak["target"] == f"≤ {bench.PEAK_RSS_RATIO_TARGET}"
    assert set(data["sections"]) == {"memory"}


def test_only_refuses_an_unknown_section(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        bench.main(["--only", "memory,nope"])
    assert exited.value.code == 2
    assert "unknown section nope" in capsys.readouterr().err
