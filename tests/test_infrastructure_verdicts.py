"""Honest verdicts when paysim's own infrastructure fails (issue 11): no engine is blamed for a
Redis nobody asked to fail, no run passes on nothing, no probe is left unjudged."""

from __future__ import annotations

import threading
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from simulator import junit, report_html
from simulator.cli import describe, main
from simulator.probes import UNREACHABLE_WAIT_S, post_webhook
from simulator.runner import run_scenario
from simulator.suite import exit_code_of, worst
from simulator.topology import InstanceDown
from tests.enginehelpers import run_virtual
from tests.redishelpers import RedisTestServer, _unavailable, closed_port_url
from tests.test_redis_simulation import SMALL

INFRA = "infrastructure: Redis unreachable from t="


def test_a_run_whose_redis_never_answered_is_incomplete_not_a_pass(tmp_path: Path) -> None:
    scenario = replace(SMALL, topology=replace(SMALL.topology, redis_url=closed_port_url()))
    report = run_scenario(scenario, 1, "reference", tmp_path)
    assert report.verdict == "incomplete" and report.exit_code == 4
    assert report.summary["infrastructure"].startswith(INFRA)
    assert exit_code_of(report.summary) == 4


def test_redis_killed_mid_run_marks_the_run_incomplete_with_its_own_exit_code(
    tmp_path: Path,
) -> None:
    import shutil

    if shutil.which("redis-server") is None:
        _unavailable("redis-server is not on PATH")
    server = RedisTestServer.spawn()
    try:
        scenario = replace(
            SMALL,
            topology=replace(SMALL.topology, redis_url=server.url),
            workload=(replace(SMALL.workload[0], at=0.8),),  # the clicks come after the kill
            durations=replace(SMALL.durations, workload_s=1.5),
        )
        killer = threading.Timer(0.3, server.stop)  # not a scenario fault: the server dies
        killer.start()
        report = run_scenario(scenario, 1, "reference", tmp_path)
        killer.join()
    finally:
        server.close()
    assert report.verdict == "incomplete" and report.exit_code == 4, report.summary["violations"]
    assert report.summary["infrastructure"].startswith(INFRA)
    assert report.summary["verdict"] != "fail"  # the engine is not blamed


def test_an_injected_redis_restart_is_a_fault_not_an_infrastructure_failure() -> None:
    """The scenario's own `redis_restart` refuses commands without marking the run."""
    from simulator.redis_faults import RedisFaults

    seen: list[str] = []
    faults = RedisFaults(
        "redis://127.0.0.1:1/0",
        "ns:",
        __import__("random").Random(1),
        lambda k, **f: seen.append(k),
    )
    faults._down_until = float("inf")
    try:
        faults.client.get("ns:x")
    except Exception as exc:
        assert "redis_restart fault" in str(exc)
    assert seen == [] and not faults._unreachable


def test_paysim_run_refuses_a_redis_scenario_with_nothing_listening(tmp_path: Path) -> None:
    url = closed_port_url()
    path = tmp_path / "redis.toml"
    path.write_text(
        f'name = "r"\n[topology]\nlocks = "redis"\nredis_url = "{url}"\n', encoding="utf-8"
    )
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["run", str(path), "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert "topology.locks" in result.output and "cannot reach Redis" in result.output
    assert len(result.output.strip().splitlines()) == 1 and not out.exists()


def test_incomplete_ranks_below_a_violation_and_above_a_missed_slo() -> None:
    assert worst([0, 3, 4]) == 4 and worst([4, 1]) == 1 and worst([4, 2]) == 2
    summary = {
        "scenario": "s",
        "engine": "reference",
        "seed": 1,
        "verdict": "incomplete",
        "infrastructure": "infrastructure: Redis unreachable from t=1.5s",
        "violations": [{"invariant": "no_lost_payment", "detail": "x", "evidence": []}],
        "thresholds": {"met": True, "misses": []},
        "replay": "paysim run s.toml --seed 1 --engine reference",
    }
    case = junit.testcase(summary)
    error = case.find("error")
    assert error is not None and error.get("type") == "infrastructure"
    assert case.find("failure") is None  # the violations seen are not blamed on the engine
    ET.tostring(error)
    banner = report_html._banner(summary)
    assert (
        "INCOMPLETE" in banner and "Redis unreachable from t=1.5s: not an engine verdict" in banner
    )
    assert "infrastructure" in " ".join(describe(summary)) and exit_code_of(summary) == 4


def test_a_probe_landing_while_the_only_instance_is_down_is_retried() -> None:
    class Flaky:
        """One instance, down for its first `down` calls (a crash, then a restart)."""

        def __init__(self, down: int) -> None:
            self.down, self.calls = down, 0

        async def call(self, fn: Any) -> tuple[str, Any]:
            self.calls += 1
            if self.calls <= self.down:
                raise InstanceDown("i0 is down")
            return "i0", 400

    async def main() -> tuple[Any, Any, float]:
        import anyio

        start = anyio.current_time()
        back = await post_webhook(Flaky(2), "probe1", b"{}", None)  # type: ignore[arg-type]
        never = await post_webhook(Flaky(10_000), "probe2", b"{}", None)  # type: ignore[arg-type]
        return back, never, anyio.current_time() - start

    back, never, waited = run_virtual(main)
    assert back == 400 and never == "unreachable"
    assert waited >= 2 * UNREACHABLE_WAIT_S
