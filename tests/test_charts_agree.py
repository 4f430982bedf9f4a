"""Charts and verdicts are computed from the same numbers: the seats chart ends on the count
counter_consistent judges, the lock-wait percentiles drawn are the table's, a wall-clock run
says so, and nothing a chart must show is drawn on or past the plot's border."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib.pyplot as plt
import pytest

from reference_impl.ports import EngineConfig
from simulator.charts import (
    chart_operations,
    chart_webhooks,
    family_percentiles,
    read_run,
)
from simulator.demo import DEMO
from simulator.runner import run_scenario
from simulator.scenario import Durations, Scenario, WorkloadPart
from simulator.scenario_file import load_scenario
from tests.test_redis_simulation import PAY_ONLY

CI = Path(__file__).resolve().parent.parent / "scenarios" / "ci"


@pytest.fixture(scope="module")
def double_click_seed_3(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """The issue's case: the verdict said 5 seats held, the chart said 6."""
    out = tmp_path_factory.mktemp("dc3")
    scenario = load_scenario(CI / "double-click.toml")
    return out, run_scenario(scenario, 3, "seed", out).summary


@pytest.fixture(scope="module")
def demo_reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("demo-ref")
    return out, run_scenario(DEMO, 1, "reference", out).summary


def test_the_seats_chart_ends_on_the_number_the_verdict_states(double_click_seed_3) -> None:
    out, summary = double_click_seed_3
    [violation] = [v for v in summary["violations"] if v["invariant"] == "counter_consistent"]
    counter, held = map(
        int, re.findall(r"class_rep_count=(\d+) but (\d+) seats held", violation["detail"])[0]
    )
    series = read_run(out).seats["prog_1"]
    assert (series.final_counter, series.final_held) == (counter, held)


def test_chart_percentiles_are_the_tables(double_click_seed_3, demo_reference) -> None:
    for out, summary in (double_click_seed_3, demo_reference):
        data = read_run(out)
        for family, row in summary["lock_wait_ms"].items():
            drawn = family_percentiles(data.locks[family])
            assert (drawn[50], drawn[95], drawn[99]) == (row["p50"], row["p95"], row["p99"])


def test_expected_refusals_are_not_drawn_as_errors(demo_reference) -> None:
    out, summary = demo_reference
    data = read_run(out)
    refused, errors = len(data.ops["refused"]), len(data.ops.get("fail", []))
    assert refused > 0  # the herd of 10 for 3 seats: limit reached, as designed
    assert refused + errors == summary["counts"]["operations"]["fail"]
    fig = chart_operations(data)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert any(label.startswith("fail, refused as designed") for label in labels)
    assert any(label.startswith("fail, an error") for label in labels)
    plt.close(fig)


def test_the_liveness_line_and_the_last_webhook_bar_are_inside_the_plot(
    double_click_seed_3,
) -> None:
    data = read_run(double_click_seed_3[0])
    fig = chart_operations(data)
    strip = fig.axes[1]
    liveness = [ln.get_xdata()[0] for ln in strip.get_lines() if ln.get_linestyle() == ":"]
    assert liveness and liveness[0] < strip.get_xlim()[1] * 0.99
    plt.close(fig)
    fig = chart_webhooks(data)
    for ax in fig.axes[1:]:
        right = ax.get_xlim()[1]
        bars = [p for p in ax.patches if p.get_height() > 0]
        assert all(p.get_x() + p.get_width() <= right + 1e-9 for p in bars)
    plt.close(fig)


def test_a_wall_clock_run_is_labelled_wall_clock(tmp_path: Path) -> None:
    tiny = Scenario(
        name="tiny-wall",
        workload=(WorkloadPart(kind="herd", count=2, at=0.05),),
        customers=PAY_ONLY,
        durations=Durations(workload_s=0.3, liveness_s=0.3, reconcile_every_s=1.0),
        engine_config=EngineConfig(session_ttl=3600.0, reconcile_grace=0.1),
        stripe_latency_s=0.01,
    )
    run_scenario(tiny, 1, "reference", tmp_path, wall_clock=True)
    data = read_run(tmp_path)
    assert data.clock == "wall-clock"
    fig = chart_operations(data)
    assert fig.axes[1].get_xlabel().startswith("wall-clock time")
    assert "per wall-clock second" in fig.axes[0].get_ylabel()
    plt.close(fig)
