"""`paysim blackbox scenarios/blackbox`: the reference engine served over HTTP passes every
scenario, the seed's design is caught with the invariants the simulation names, and nothing
paysim started is left listening, after a pass, a failure, or a target it could not use."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from simulator.cli import main
from tests.blackbox_sockets import listening_ports

ROOT = Path(__file__).resolve().parent.parent
SUITE = ROOT / "scenarios" / "blackbox"


def _blackbox(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["blackbox", *args], catch_exceptions=False)
    return result.exit_code, result.output


def _summaries(out: Path) -> dict[str, dict]:
    return {p.parent.parent.name: json.loads(p.read_text()) for p in out.rglob("summary.json")}


def test_reference_served_passes_the_whole_suite_and_leaves_nothing_listening(
    tmp_path: Path,
) -> None:
    before = listening_ports()
    code, output = _blackbox(
        str(SUITE), "--serve", "reference", "--receipts", "smtp", "--out", str(tmp_path)
    )
    assert code == 0, output
    summaries = _summaries(tmp_path)
    assert set(summaries) == {p.stem for p in SUITE.glob("*.toml")}
    for name, summary in summaries.items():
        assert summary["verdict"] == "pass", (name, summary["violations"], summary["vacuous"])
        assert summary["clock"] == "wall-clock" and summary["mode"] == "blackbox"
        assert summary["quiescent"], name
        assert summary["counts"]["operations"]["ok"] > 0
    # the served engine's fulfilments (HTTP sink) and receipts (SMTP sink) arrived, once each
    herd = summaries["herd-last-seat"]["counts"]
    assert herd["fulfilments"] == herd["receipts"] >= 1
    assert listening_ports() == before


def test_seed_served_is_caught_with_the_simulation_invariants(tmp_path: Path) -> None:
    before = listening_ports()
    picked = tmp_path / "suite"
    picked.mkdir()
    for name in ("double-click", "pay-after-cancel"):
        shutil.copy(SUITE / f"{name}.toml", picked / f"{name}.toml")
    junit = tmp_path / "junit.xml"
    code, output = _blackbox(
        str(picked), "--serve", "seed", "--out", str(tmp_path / "out"), "--junit", str(junit)
    )
    assert code == 1, output
    xml = junit.read_text()
    assert xml.count("<testcase") == 2 and "<failure" in xml and "paysim blackbox" in xml
    summaries = _summaries(tmp_path / "out")
    violated = {name: {v["invariant"] for v in s["violations"]} for name, s in summaries.items()}
    # the invariants the CI suite names for these hazards in simulation (wall-clock runs
    # interleave differently each time: which of the two shows first may vary)
    assert violated["double-click"] & {"counter_consistent", "single_pending_per_user"}
    assert violated["pay-after-cancel"] & {"no_limit_bypass", "counter_consistent"}
    assert "violated counter_consistent" in output and "replay: paysim blackbox" in output
    assert listening_ports() == before
    # the run folder is an ordinary one: `paysim check` re-judges it, `paysim report` redraws it
    run_dir = next((tmp_path / "out").rglob("pay-after-cancel/seed-1"))
    checked = CliRunner().invoke(main, ["check", str(run_dir)])
    assert checked.exit_code == 1 and "violated" in checked.output
    reported = CliRunner().invoke(main, ["report", str(run_dir)])
    assert reported.exit_code == 0 and (run_dir / "charts" / "seats.png").is_file()
    assert '"clock":"wall"' in (run_dir / "history.jsonl").read_text().splitlines()[0]


def test_an_unreachable_target_is_bad_input_and_nothing_is_left_listening(
    tmp_path: Path,
) -> None:
    before = listening_ports()
    code, output = _blackbox(
        str(SUITE / "double-click.toml"),
        "--target",
        "http://127.0.0.1:9",  # discard port: nothing listens
        "--out",
        str(tmp_path),
    )
    assert code == 2, output
    assert "127.0.0.1:9" in output and "Traceback" not in output
    assert listening_ports() == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "exactly one of --target URL and --serve ENGINE"),
        (["--serve", "reference", "--target", "http://x"], "exactly one of"),
        (["--target", "ftp://x"], "--target 'ftp://x': not an http(s) URL"),
        (["--serve", "reference", "--state", "redis://x"], "--state 'redis://x'"),
        (["--serve", "nope"], "--serve: unknown engine 'nope'"),
    ],
)
def test_bad_options_are_one_line_exit_2(args: list[str], message: str) -> None:
    code, output = _blackbox(str(SUITE / "double-click.toml"), *args)
    assert code == 2 and message in output
    assert len(output.strip().splitlines()) == 1


def test_ctrl_c_stops_everything_paysim_started_and_exits_130(tmp_path: Path) -> None:
    import os
    import signal
    import threading

    before = listening_ports()
    timer = threading.Timer(3.0, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    try:
        code, output = _blackbox(
            str(SUITE / "herd-last-seat.toml"),
            "--serve",
            "reference",
            "--receipts",
            "smtp",  # the SMTP sink's thread too
            "--out",
            str(tmp_path),
        )
    finally:
        timer.cancel()
    assert code == 130, output
    assert "stopped (Ctrl-C)" in output
    assert listening_ports() == before


def test_crash_faults_act_on_a_served_engine_only(tmp_path: Path) -> None:
    from simulator.blackbox.driver import Target, faults_split, played
    from simulator.scenario_file import load_scenario

    crash = ROOT / "tests" / "data" / "blackbox" / "crash.toml"
    scenario = load_scenario(crash)
    # against a service paysim did not start, a crash has nothing to act on: off, and said so
    assert faults_split(scenario, Target(url="http://x")) == ([], ["crash"])
    assert played(scenario, Target(url="http://x")).faults == ()
    assert faults_split(scenario, Target(serve="reference")) == (["crash"], [])
    from simulator.blackbox.runs import run_blackbox_case

    result = run_blackbox_case(scenario, 1, Target(serve="reference"), tmp_path, report=False)
    assert result.exit_code == 0, (result.summary["violations"], result.summary["vacuous"])
    history = (tmp_path / "history.jsonl").read_text()
    assert '"type":"instance.crash"' in history  # the reference engine survived real crashes
