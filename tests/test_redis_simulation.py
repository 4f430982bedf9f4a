"""Simulations with the locks on a real Redis (wall-clock), and the lease faults.

The three CI scenarios about locks across instances give their verdicts per engine; Redis being
down makes operations fail as busy with nothing half-written; `redis_restart`, `redis_latency`
and `lease_pause` visibly happen; a run touches only its own keys.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import redis

from reference_impl.ports import EngineConfig
from simulator.judge import read_history
from simulator.run import simulate
from simulator.runner import run_scenario
from simulator.scenario import (
    CustomerMix,
    Durations,
    FaultSpec,
    ProgramSpec,
    Scenario,
    Thresholds,
    Topology,
    WorkloadPart,
)
from simulator.scenario_file import load_scenario
from tests.redishelpers import (  # noqa: F401
    closed_port_url,
    redis_server,
    redis_url,
    unique_namespace,
)

CI = Path(__file__).resolve().parent.parent / "scenarios" / "ci"
PAY_ONLY = CustomerMix(
    pay=1.0,
    abandon=0.0,
    decline_then_pay=0.0,
    decline=0.0,
    async_success=0.0,
    async_failure=0.0,
    cancel=0.0,
    pay_after_cancel=0.0,
    think_time_s=(0.05, 0.1),
)
#: a short wall-clock run on Redis: three users click twice at 0.1 s
SMALL = Scenario(
    name="redis-small",
    programs=(ProgramSpec(class_rep_limit=5),),
    workload=(WorkloadPart(kind="double_click", count=3, clicks=2, at=0.1),),
    customers=PAY_ONLY,
    topology=Topology(locks="redis", lease_s=2.0),
    durations=Durations(workload_s=0.8, liveness_s=3.0, reconcile_every_s=0.5),
    thresholds=Thresholds(mean_wait_ms=10_000.0, timeout_ratio=1.0),
    engine_config=EngineConfig(session_ttl=3600.0, reconcile_grace=0.3, stripe_timeout=2.0),
    stripe_latency_s=0.01,
)


def of(history: list[dict[str, Any]], kind: str, **match: Any) -> list[dict[str, Any]]:
    return [
        e for e in history if e["type"] == kind and all(e.get(k) == v for k, v in match.items())
    ]


def ci_scenario(name: str, url: str | None = None) -> Scenario:
    scenario = load_scenario(CI / f"{name}.toml")
    if url is not None:
        scenario = replace(scenario, topology=replace(scenario.topology, redis_url=url))
    return scenario


def run(tmp_path: Path, scenario: Scenario, engine: str = "reference") -> tuple[Any, list[Any]]:
    report = run_scenario(scenario, scenario.seeds[0], engine, tmp_path / engine.replace(":", "_"))
    return report, list(read_history(report.out_dir / "history.jsonl"))


def caught(report: Any) -> set[str]:
    return {v["invariant"] for v in report.summary["violations"]}


# ---- the scenarios' verdicts


@pytest.mark.parametrize(
    ("engine", "verdict", "invariant"),
    [
        ("reference", "pass", None),
        ("seed", "fail", "single_pending_per_user"),
        ("mutant:redis-no-fence", "fail", "single_pending_per_user"),
    ],
)
def test_rolling_deploy_with_memory_locks(
    tmp_path: Path, engine: str, verdict: str, invariant: str | None
) -> None:
    """Virtual time, two lock tables: only conditional writes keep the reference correct."""
    scenario = ci_scenario("rolling-deploy-memory-locks")
    for seed in scenario.seeds:
        report = run_scenario(scenario, seed, engine, tmp_path / str(seed))
        assert report.verdict == verdict, (seed, report.summary["violations"])
        if invariant:
            assert invariant in caught(report)
        else:
            assert report.summary["thresholds"]["met"]


def test_rolling_deploy_with_redis_locks_passes_and_locks_across_instances(
    tmp_path: Path,
    redis_url: str,  # noqa: F811
) -> None:
    report, history = run(tmp_path, ci_scenario("rolling-deploy-redis-locks", redis_url))
    assert report.verdict == "pass", (report.summary["violations"], report.summary["vacuous"])
    assert report.summary["thresholds"]["met"]
    assert report.run.wall_s < 15
    served = {e["instance"] for e in of(history, "op.ok", op="create")}
    assert served == {"i0", "i1"}
    # one Redis lock across both instances: the clicks waited, none was turned away
    assert not of(history, "op.fail", op="create")
    [connect] = of(history, "redis.connect")
    assert connect["namespace"].startswith("paysim:sim:1:")


def test_lease_expiry_reference_passes_with_every_lease_fault_visible(
    tmp_path: Path,
    redis_url: str,  # noqa: F811
) -> None:
    report, history = run(tmp_path, ci_scenario("lease-expiry-fenced", redis_url))
    assert report.verdict == "pass", (report.summary["violations"], report.summary["vacuous"])
    assert report.summary["thresholds"]["met"]
    assert report.run.wall_s < 15
    pauses = of(history, "fault.lease_pause")
    assert pauses and all(p["delay_s"] > 0.3 for p in pauses)  # longer than the lease
    assert of(history, "lock.lease_lost"), "a stale holder released a lease already gone"
    [restart] = of(history, "redis.restart")
    assert restart["keys_lost"] > 0
    assert of(history, "redis.delay")
    # tokens stay ordered across the restart (their time floor): no later grant is smaller
    grants = of(history, "lock.granted")
    before = [g["token"] for g in grants if g["seq"] < restart["seq"]]
    after = [g["token"] for g in grants if g["seq"] > restart["seq"]]
    assert after and min(after) > max(before)
    # the stale holders were turned away by the store, after the newer holder's purchase
    assert of(history, "op.fail", op="create", error="busy")


def test_lease_expiry_catches_the_unfenced_mutant(
    tmp_path: Path,
    redis_url: str,  # noqa: F811
) -> None:
    report, _ = run(
        tmp_path, ci_scenario("lease-expiry-fenced", redis_url), "mutant:redis-no-fence"
    )
    assert report.verdict == "fail"
    assert "single_pending_per_user" in caught(report)
    assert report.run.wall_s < 15


# ---- Redis down, restarted, slow


def test_redis_down_every_create_is_busy_and_nothing_is_written(tmp_path: Path) -> None:
    scenario = replace(SMALL, topology=replace(SMALL.topology, redis_url=closed_port_url()))
    report, history = run(tmp_path, scenario)
    assert of(history, "redis.unreachable")
    fails = of(history, "op.fail", op="create")
    assert len(fails) == len(of(history, "op.invoke", op="create")) == 6
    assert all(f["error"] == "busy" and "Redis unreachable" in f["message"] for f in fails)
    assert not of(history, "store.write")
    assert report.run.final_state["purchases"] == []
    assert report.run.final_state["programs"][0]["class_rep_count"] == 0
    assert report.run.counts["sessions"] == 0
    assert report.run.wall_s < 10


def test_redis_restart_loses_the_runs_keys_only_and_refuses_commands_meanwhile(
    tmp_path: Path,
    redis_url: str,  # noqa: F811
) -> None:
    bystander, other_key = redis.Redis.from_url(redis_url), f"{unique_namespace()}bystander"
    bystander.set(other_key, "kept")
    try:
        scenario = replace(
            SMALL,
            faults=(
                # the first holders stall 0.5 s at their first write, holding their locks
                FaultSpec(kind="lease_pause", target="any", value_s=0.5, end=0.15),
                # Redis restarts under them and stays down while their waiters poll
                FaultSpec(kind="redis_restart", start=0.15, value_s=0.3),
            ),
        )
        report, history = run(tmp_path, scenario)
        assert bystander.get(other_key) == b"kept"
        [connect] = of(history, "redis.connect")
        assert not list(bystander.scan_iter(match=f"{connect['namespace']}*"))
    finally:
        bystander.delete(other_key)
        bystander.close()
    [restart] = of(history, "redis.restart")
    assert restart["keys_lost"] >= 3 and restart["downtime_s"] == 0.3
    refused = [f for f in of(history, "op.fail", op="create") if "restarting" in f["message"]]
    assert refused, "waiters polling during the downtime answer busy"
    for op in refused:  # busy before anything was written
        assert not [w for w in of(history, "store.write") if w["req"] == f"op{op['op_id']}"]
    # the holders' releases fell into the downtime or found their key gone
    assert of(history, "lock.release_failed") or of(history, "lock.lease_lost")
    assert report.verdict == "pass", (report.summary["violations"], report.summary["vacuous"])


def test_redis_latency_delays_commands(tmp_path: Path, redis_url: str) -> None:  # noqa: F811
    scenario = replace(
        SMALL, faults=(FaultSpec(kind="redis_latency", probability=0.5, value_s=0.1),)
    )
    report, history = run(tmp_path, scenario)
    delays = of(history, "redis.delay")
    assert delays and all(d["delay_s"] == 0.1 for d in delays)
    assert {d["command"] for d in delays} >= {"EVALSHA"}
    assert report.verdict == "pass", (report.summary["violations"], report.summary["vacuous"])


def test_redis_runs_are_forced_to_wall_clock(tmp_path: Path, redis_url: str) -> None:  # noqa: F811
    scenario = replace(SMALL, topology=replace(SMALL.topology, redis_url=redis_url))
    result = simulate(scenario, 1, "reference", tmp_path / "run", wall_clock=False)
    # the liveness phase alone is a day and more of virtual time; real time moved a few seconds
    assert result.virtual_s < 10
    assert result.virtual_s == pytest.approx(result.wall_s, abs=1.0)


# ---- lease_pause on in-memory locks (virtual time)


def test_lease_pause_stalls_a_holder_at_its_first_write_in_virtual_time(tmp_path: Path) -> None:
    scenario = replace(
        SMALL,
        topology=Topology(),
        faults=(FaultSpec(kind="lease_pause", target="i0", value_s=7.0, end=1.0),),
        durations=Durations(workload_s=30.0, reconcile_every_s=60.0),
        engine_config=EngineConfig(session_ttl=3600.0),
    )
    a = simulate(scenario, 1, "reference", tmp_path / "a")
    b = simulate(scenario, 1, "reference", tmp_path / "b")
    assert a.history_sha256 == b.history_sha256  # still deterministic
    history = list(read_history(tmp_path / "a" / "history.jsonl"))
    pauses = of(history, "fault.lease_pause")
    assert pauses and all(p["key"].startswith("purchase:create:") for p in pauses)
    first = pauses[0]
    writes = [w for w in of(history, "store.write") if w["seq"] > first["seq"]]
    assert writes and writes[0]["t"] >= first["t"] + 7.0 - 1e-6
