"""The CLI as a new user meets it: Ctrl-C, SIGTERM, corrupted run folders, piped output, and the
small things (--version, --json errors, load's overwrite, wording and units)."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path

import pytest
import redis
import trio
from click.testing import CliRunner, Result

from reference_impl.reference_engine import ReferenceEngine
from simulator import cli as cli_module
from simulator.cli import main
from simulator.load import LoadSpec, load_scenario_for
from simulator.run import simulate
from simulator.scenario import MIN_SESSION_TTL_S
from tests.redishelpers import redis_server, redis_url  # noqa: F401
from tests.test_cli import DUPLICATES, SUITE

ROOT = Path(__file__).resolve().parent.parent

#: a run that lasts minutes: the signal always lands mid-run
LONG = """name = "long"
[[workload]]
kind = "steady"
count = 100000
rate_per_s = 50.0
duration_s = 3000.0
[durations]
workload_s = 3000.0
"""


def paysim(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def stored_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("stored") / "run"
    assert paysim("run", DUPLICATES, "--out", out).exit_code == 0
    return out


def copy_of(run: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(run, target)
    return target


# ---- Ctrl-C and SIGTERM


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupted_run_exits_130_with_one_line_and_never_mixes_with_the_old_run(
    tmp_path: Path, signum: int
) -> None:
    scenario = tmp_path / "long.toml"
    scenario.write_text(LONG)
    out = tmp_path / "out"
    (out / "charts").mkdir(parents=True)
    (out / "summary.json").write_text('{"verdict": "pass"}')  # an earlier run's files
    (out / "report.html").write_text("old")
    command = [sys.executable, "-c", "from simulator.cli import main; main()"]
    proc = subprocess.Popen(
        [*command, "run", str(scenario), "--out", str(out)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    history = tmp_path / ".out.partial" / "history.jsonl"
    deadline = time.monotonic() + 60
    while not (history.is_file() and history.stat().st_size > 10_000):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.1)
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert stderr.strip().splitlines() == [
        "paysim: interrupted (exit 130); an unfinished run folder is marked INTERRUPTED"
    ]
    assert (out / "INTERRUPTED").read_text().startswith("the run was interrupted")
    assert not (out / "report.html").exists() and not (out / "summary.json").exists()
    for command_name in ("check", "report"):
        result = paysim(command_name, out)
        assert result.exit_code == 2
        assert "INTERRUPTED: the run was interrupted" in result.stderr


def test_a_rerun_into_a_folder_replaces_every_file_of_the_old_run(
    stored_run: Path, tmp_path: Path
) -> None:
    out = copy_of(stored_run, tmp_path)
    (out / "charts" / "stale.png").write_bytes(b"old")
    (out / "notes.txt").write_text("old")
    assert paysim("run", DUPLICATES, "--seed", "2", "--out", out).exit_code == 0
    assert not (out / "notes.txt").exists() and not (out / "charts" / "stale.png").exists()
    assert json.loads((out / "summary.json").read_text())["seed"] == 2
    assert not list(tmp_path.glob(".copy.*")), "no staging folder left behind"


# ---- corrupted run folders: exit 2 naming file and line


@pytest.mark.parametrize(
    ("damage", "named"),
    [
        (lambda h: h[: len(h) // 2], "history.jsonl:"),  # truncated mid-line
        (lambda h: h.replace(h.splitlines()[3], "garbage"), "history.jsonl:4: not a JSON line"),
        (
            lambda h: h.replace('"t":0.0', '"t":"yesterday"', 1),
            'history.jsonl:1: expected a number "t"',
        ),
    ],
    ids=["truncated", "garbage", "t-yesterday"],
)
@pytest.mark.parametrize("command", ["check", "report"])
def test_a_corrupted_history_exits_2_naming_the_file_and_line(
    stored_run: Path, tmp_path: Path, damage: object, named: str, command: str
) -> None:
    run = copy_of(stored_run, tmp_path)
    history = run / "history.jsonl"
    history.write_text(damage(history.read_text()))  # type: ignore[operator]
    result = paysim(command, run)
    assert result.exit_code == 2, result.output
    [line] = result.stderr.splitlines()
    assert named in line


@pytest.mark.parametrize("name", ["final_state.json", "ledgers.json"])
def test_a_truncated_final_state_exits_2_naming_the_file_and_line(
    stored_run: Path, tmp_path: Path, name: str
) -> None:
    run = copy_of(stored_run, tmp_path)
    text = (run / name).read_text()
    (run / name).write_text(text[: len(text) // 2])
    result = paysim("check", run)
    assert result.exit_code == 2, result.output
    [line] = result.stderr.splitlines()
    assert f"{name}:" in line and "not JSON" in line


def test_check_and_report_both_refuse_a_folder_without_summary(
    stored_run: Path, tmp_path: Path
) -> None:
    run = copy_of(stored_run, tmp_path)
    (run / "summary.json").unlink()
    for command in ("check", "report"):
        result = paysim(command, run)
        assert result.exit_code == 2
        assert "summary.json: missing" in result.stderr


# ---- piped output, and the small things


def test_piped_suite_prints_a_line_per_finished_run_and_junit_times_are_wall_times(
    tmp_path: Path,
) -> None:
    import xml.etree.ElementTree as ET

    junit = tmp_path / "junit.xml"
    result = paysim(
        "suite", SUITE, "--seeds", "1", "--out", tmp_path / "s", "--workers", "1",
        "--junit", junit, "--json",
    )  # fmt: skip
    progress = [line for line in result.stderr.splitlines() if line.startswith("[")]
    assert [line.split("]")[0] for line in progress] == ["[1/2", "[2/2"]
    for run in ("duplicates · seed 1 · reference", "slo-miss · seed 1 · reference"):
        assert sum(run in line for line in progress) == 1, progress  # in the order they end
    summaries = {s["scenario"]: s for s in json.loads(result.stdout)}
    for case in ET.parse(junit).getroot().iter("testcase"):
        summary = summaries[case.get("classname")]
        props = {p.get("name"): float(p.get("value")) for p in case.iter("property")}
        assert props["virtual_s"] == pytest.approx(summary["virtual_s"], abs=1e-3)
        # the whole run (simulation, checkers, charts, report), not the simulated span
        assert float(case.get("time")) > summary["wall_s"]
        assert float(case.get("time")) < summary["virtual_s"]


def test_version() -> None:
    result = paysim("--version")
    assert result.exit_code == 0
    assert result.stdout.startswith("paysim, version ")


def test_json_bad_input_prints_a_json_error_on_stdout(tmp_path: Path) -> None:
    result = paysim("run", tmp_path / "missing.toml", "--json")
    assert result.exit_code == 2
    error = json.loads(result.stdout)
    assert error["exit_code"] == 2 and "missing.toml: no such scenario file" in error["error"]


def test_load_refuses_to_overwrite_an_earlier_run_without_force(tmp_path: Path) -> None:
    out = tmp_path / "load"
    out.mkdir()
    (out / "summary.json").write_text("{}")
    args = ["load", "--purchases", "6", "--concurrency", "2", "--out", out]
    refused = paysim(*args)
    assert refused.exit_code == 2 and "--force" in refused.stderr
    assert (out / "summary.json").read_text() == "{}"
    forced = paysim(*args, "--force")
    assert forced.exit_code in (0, 3), forced.output
    # the wording counts purchases and requests apart; the table says its unit
    assert "load 6 purchases (8 requests)" in forced.stderr
    assert "6 purchases (2 buyers at once clicking 2×: 8 purchase requests)" in forced.stdout
    assert "p99 ms" in forced.stdout


def test_load_sessions_expire_well_past_stripes_minimum() -> None:
    scenario = load_scenario_for(LoadSpec(purchases=10))
    assert scenario.engine_config.session_ttl >= MIN_SESSION_TTL_S + 600


def test_numeric_options_have_upper_bounds() -> None:
    result = paysim("load", "--purchases", "1000000000")
    assert result.exit_code == 2
    assert "'--purchases'" in result.stderr and "100000" in result.stderr


def test_a_well_formed_line_no_run_writes_is_bad_input_not_a_traceback(
    stored_run: Path, tmp_path: Path
) -> None:
    run = copy_of(stored_run, tmp_path)
    history = run / "history.jsonl"
    lines = history.read_text().splitlines()
    grant = next(n for n, line in enumerate(lines) if '"type":"lock.granted"' in line)
    entry = json.loads(lines[grant])
    entry["wait_s"] = "a while"
    lines[grant] = json.dumps(entry)
    history.write_text("\n".join(lines) + "\n")
    result = paysim("check", run)  # catch_exceptions=False: a traceback fails the test
    assert result.exit_code == 2, result.output
    [line] = result.stderr.splitlines()
    assert "history.jsonl" in line


def test_the_sigterm_handler_is_restored_after_a_command() -> None:
    before = signal.getsignal(signal.SIGTERM)
    paysim("--version")
    assert signal.getsignal(signal.SIGTERM) is before


def test_sigterm_with_sigint_ignored_waits_for_trios_ki_protected_code_to_finish(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A background job ignores SIGINT, so trio installs no Ctrl-C handler and the SIGTERM
    handler interrupts by itself. It raised KeyboardInterrupt at whatever bytecode it landed
    on, trio's run loop included (a TrioInternalError, "I/O operation on closed epoll object"
    as the coroutines left behind were collected); it must defer in KI-protected code, as
    trio's own handler does, and the interrupt arrive at the next checkpoint."""
    reached: list[str] = []

    @trio.lowlevel.enable_ki_protection
    def protected() -> None:  # stands for trio's run loop and nursery bookkeeping
        signal.raise_signal(signal.SIGTERM)  # the handler runs before this returns
        reached.append("the rest of the protected code")

    async def main() -> None:
        protected()
        await trio.lowlevel.checkpoint()
        reached.append("past the checkpoint")

    monkeypatch.setattr(sys, "unraisablehook", sys.unraisablehook)  # the handler quiets these
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN), signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, cli_module._terminate)  # noqa: SLF001
    try:
        with warnings.catch_warnings(), pytest.raises(KeyboardInterrupt):
            trio.run(main)
    finally:
        signal.signal(signal.SIGINT, previous[0])
        signal.signal(signal.SIGTERM, previous[1])
    assert reached == ["the rest of the protected code"]


# ---- an interrupted Redis run leaves no keys behind


class _InterruptedEngine(ReferenceEngine):
    """The reference engine, and a Ctrl-C arriving during the first webhook (locks were taken,
    so the run's fence keys exist in Redis)."""

    async def handle_webhook(self, payload: bytes, signature_header: str | None) -> int:
        raise KeyboardInterrupt


def test_an_interrupted_redis_run_deletes_its_keys(
    tmp_path: Path,
    redis_url: str,  # noqa: F811
) -> None:
    from tests.test_redis_simulation import SMALL

    client = redis.Redis.from_url(redis_url)
    before = set(client.scan_iter(match="paysim:sim:*"))
    scenario = replace(SMALL, topology=replace(SMALL.topology, redis_url=redis_url))
    with pytest.raises(BaseException) as caught:
        simulate(scenario, 1, _InterruptedEngine, tmp_path)
    assert caught.group_contains(KeyboardInterrupt) if isinstance(
        caught.value, BaseExceptionGroup
    ) else isinstance(caught.value, KeyboardInterrupt)
    history = (tmp_path / "history.jsonl").read_text()
    assert '"type":"lock.granted"' in history, "the run took Redis locks before the interrupt"
    assert set(client.scan_iter(match="paysim:sim:*")) == before
    client.close()


def test_nothing_points_users_at_files_they_do_not_have() -> None:
    """paysim stands alone: no path into the team's private notes in code, docs or CLI output."""
    private = ("SEED_" + "FACTS", "../" + "shared")
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    hits = [
        name
        for name in tracked
        if not name.startswith("tests/")
        and Path(ROOT / name).is_file()
        and any(p in (ROOT / name).read_text(errors="replace") for p in private)
    ]
    assert hits == []
    engines = paysim("engines").stdout
    assert "docs/seed-design.md" in engines and not any(p in engines for p in private)


# ---- explore --shrink when Hypothesis finds nothing


def test_explore_shrinks_the_sweeps_own_failure_when_hypothesis_finds_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import simulator.explore

    monkeypatch.setattr(simulator.explore, "search", lambda *a, **k: None)
    out = tmp_path / "x"
    result = paysim(
        "explore", DUPLICATES, "--seeds", "2", "--workers", "1", "--shrink", "--max-examples", "1",
        "--engine", "mutant:no-transition-guard", "--out", out, "--json",
    )  # fmt: skip
    assert result.exit_code == 1
    assert "shrinking the sweep's first failing seed (1) instead" in result.stderr
    shrunk = json.loads(result.stdout)["shrunk"]
    assert shrunk is not None and shrunk["seed"] == 1
    assert Path(shrunk["path"]).read_text() == shrunk["scenario_toml"]
    assert "no_double_completion" in {v["invariant"] for v in shrunk["summary"]["violations"]}
    # each failing seed is listed once
    listed = [line for line in result.stderr.splitlines() if line.startswith("seed 1 ")]
    assert len(listed) == 1
    assert "failing seeds:" not in result.stderr
