"""Charts: valid PNGs from a real run, and the data behind them shows what the run did."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from simulator.charts import (
    CHART_FILES,
    bucket_width,
    make_charts,
    read_run,
    time_panels,
    time_unit,
)
from simulator.demo import DEMO
from simulator.run import simulate

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def demo_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("demo")
    runs = {}
    for engine in ("reference", "seed"):
        simulate(DEMO, 1, engine, root / engine)
        runs[engine] = root / engine
    return runs


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == PNG_SIGNATURE, f"{path.name} is not a PNG"
    width, height = struct.unpack(">II", head[16:24])
    return width, height


@pytest.mark.parametrize("engine", ["reference", "seed"])
def test_every_chart_is_a_real_png(demo_runs: dict[str, Path], engine: str) -> None:
    paths = make_charts(demo_runs[engine])
    assert [p.name for p in paths] == list(CHART_FILES)
    for path in paths:
        assert path.parent == demo_runs[engine] / "charts"
        assert path.stat().st_size > 15_000, f"{path.name} looks empty"
        width, height = _png_size(path)
        assert width >= 1000 and height >= 300


def test_seats_show_the_seed_designs_leak(demo_runs: dict[str, Path]) -> None:
    """The herd's creates collide on the order number (the unique index refuses all but one)
    and nothing gives their reserved seats back: the counter says 3 while none is held at the
    end. The reference stays in step."""
    seed = read_run(demo_runs["seed"]).seats["prog_1"]
    assert seed.limit == 3
    assert (seed.final_counter, seed.final_held) == (3, 0)
    reference = read_run(demo_runs["reference"]).seats["prog_1"]
    assert reference.final_counter == reference.final_held


def test_run_data_matches_the_history(demo_runs: dict[str, Path]) -> None:
    lines = [json.loads(x) for x in (demo_runs["seed"] / "history.jsonl").read_text().splitlines()]
    data = read_run(demo_runs["seed"])
    grants = [e for e in lines if e["type"] in ("lock.granted", "lock.timeout")]
    assert sum(len(f.waits_ms) for f in data.locks.values()) == len(grants)
    drawn = {k: len(v) for k, v in data.ops.items()}
    drawn["fail"] = drawn.get("fail", 0) + drawn.pop("refused", 0)  # fail = refused + errors
    assert drawn == {k: sum(1 for e in lines if e["type"] == f"op.{k}") for k in drawn}
    assert sum(data.attempts.values()) == sum(1 for e in lines if e["type"] == "webhook.attempt")
    # the demo's one fault is on for the whole workload phase
    assert [(w.kind, w.start, w.end) for w in data.faults] == [("webhook_duplicates", 0.0, 300.0)]
    assert data.faults_stop_t == 300.0


def _write_history(run_dir: Path, entries: list[dict[str, object]]) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    with (run_dir / "history.jsonl").open("w") as fh:
        for seq, entry in enumerate(entries):
            fh.write(json.dumps({"seq": seq, **entry}) + "\n")


def test_edge_cases_timeouts_crashes_and_deletes(tmp_path: Path) -> None:
    run = tmp_path / "run"
    _write_history(
        run,
        [
            {"t": 0, "type": "run.start", "scenario": "edge", "seed": 9, "engine": "x"},
            {"t": 1, "type": "fault.start", "kind": "pause", "target": "i0"},
            {"t": 2, "type": "instance.crash", "instance": "i0"},
            {"t": 3, "type": "lock.granted", "family": "f", "wait_s": 0.0},
            {"t": 4, "type": "lock.granted", "family": "f", "wait_s": 0.25},
            {"t": 5, "type": "lock.timeout", "family": "f", "wait_s": 10.0},
            {"t": 5, "type": "lock.cancelled", "family": "f"},
            {
                "t": 6,
                "type": "store.write",
                "coll": "purchases",
                "op": "insert_one",
                "id": "p1",
                "doc": {"status": "pending", "class_rep": True, "program_id": "prog"},
            },
            {
                "t": 7,
                "type": "store.write",
                "coll": "programs",
                "op": "update_one",
                "id": "prog",
                "doc": {"class_rep_count": 1, "class_rep_limit": 1},
            },
            {
                "t": 8,
                "type": "store.write",
                "coll": "purchases",
                "op": "delete_one",
                "id": "p1",
                "doc": {},
            },
            {"t": 9, "type": "webhook.attempt", "event_id": "e1"},
            {"t": 9, "type": "webhook.response", "status": None, "error": "timeout"},
            {"t": 9, "type": "webhook.given_up", "event_id": "e1"},
            {"t": 20, "type": "liveness.start"},
            {"t": 50_000, "type": "webhook.response", "status": 200},
        ],
    )
    data = read_run(run)
    family = data.locks["f"]
    assert list(family.waits_ms) == [0.0, 250.0, 10_000.0]
    assert list(family.timed_out) == [0, 0, 1] and family.cancelled == 1
    assert [(w.kind, w.start, w.end) for w in data.faults] == [("pause", 1.0, 20.0)]
    assert data.markers == [(2.0, "crash", "i0")]
    seats = data.seats["prog"]
    assert seats.held == [(0.0, 0), (6.0, 1), (8.0, 0)] and seats.final_counter == 1
    assert data.given_up == 1 and data.responses[0] == (9.0, "timeout")
    assert all(p.stat().st_size > 10_000 for p in make_charts(run))


def test_an_empty_run_still_gets_readable_charts(tmp_path: Path) -> None:
    _write_history(tmp_path, [{"t": 0, "type": "run.start"}, {"t": 1, "type": "run.end"}])
    assert len(make_charts(tmp_path)) == len(CHART_FILES)


@pytest.mark.parametrize(
    ("span", "unit"), [(90, "s"), (600, "s"), (3600, "min"), (86400, "h"), (10 * 86400, "days")]
)
def test_time_unit_suits_the_span(span: float, unit: str) -> None:
    assert time_unit(span).label == unit


def test_buckets_and_panels() -> None:
    assert bucket_width(300) == 5
    assert bucket_width(3 * 86400) >= 3600
    assert time_panels(300, 600) == [(0.0, 600)]
    assert time_panels(300, 86400) == [(0.0, 300), (300, 86400)]
