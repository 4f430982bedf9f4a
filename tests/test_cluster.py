"""`--cluster`: explore, suite and mutants on a Dask cluster give what a local run gives.

Two clusters: `--cluster local:2` as users try it (started and stopped by paysim), and a
2-worker cluster started here, apart from the client, as a user's running scheduler is: its
workers cannot import what only the client's folder holds.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from simulator.cli import main
from simulator.cluster import ClusterError, pool, probe
from simulator.cluster.address import parse_address
from simulator.cluster.remote import write_run_folder
from simulator.cluster.session import local_cluster

ROOT = Path(__file__).parent.parent
DATA = Path(__file__).parent / "data"
DOUBLE_CLICK = ROOT / "scenarios" / "ci" / "double-click.toml"
DUPLICATES = DATA / "scenarios" / "suite" / "duplicates.toml"


def paysim(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def shas(result: Result) -> dict[int, str]:
    assert result.exit_code == 0, result.output
    return {s["seed"]: s["history_sha256"] for s in json.loads(result.stdout)["summaries"]}


@pytest.fixture(scope="module")
def running_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A scheduler and 2 one-thread worker processes, as a user's: their import path is the one
    of this process before any test adds to it, plus the test engines' folder (`dies_once`)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(DATA / "engines"))
        patch.setenv("PAYSIM_DIE_ONCE", str(tmp_path_factory.mktemp("cluster") / "died"))
        with local_cluster(2) as cluster:
            yield cluster.scheduler_address


@pytest.fixture
def small_suite(tmp_path: Path) -> Path:
    suite = tmp_path / "suite"
    suite.mkdir()
    shutil.copy(DUPLICATES, suite)
    return suite


# ---- addresses


@pytest.mark.parametrize(
    ("text", "scheduler", "local"),
    [
        ("local:2", None, 2),
        ("tcp://10.0.0.5:8786", "tcp://10.0.0.5:8786", 0),
        ("tcp://[::1]:8786", "tcp://[::1]:8786", 0),
        ("tcp://sched.example:8786", "tcp://sched.example:8786", 0),
    ],
)
def test_an_address_names_a_scheduler_or_a_local_cluster(
    text: str, scheduler: str | None, local: int
) -> None:
    address = parse_address(text)
    assert (address.scheduler, address.local_workers) == (scheduler, local)


@pytest.mark.parametrize(
    "text",
    ["local:0", "local:65", "local:x", "10.0.0.5:8786", "tcp://host", "tcp://h:0", "http://h:1"],
)
def test_a_bad_address_is_one_line_naming_the_option(text: str) -> None:
    with pytest.raises(ClusterError, match=r"^--cluster ") as caught:
        parse_address(text)
    assert "\n" not in str(caught.value)


# ---- same histories as a local run


def test_explore_on_a_local_cluster_gives_the_histories_of_one_worker_and_stops_it() -> None:
    import psutil  # a dependency of distributed

    local = paysim("explore", DOUBLE_CLICK, "--seeds", "8", "--workers", "1", "--json")
    children = {p.pid for p in psutil.Process().children(recursive=True)}
    remote = paysim("explore", DOUBLE_CLICK, "--seeds", "8", "--cluster", "local:2", "--json")
    left = [
        " ".join(p.cmdline())
        for p in psutil.Process().children(recursive=True)
        if p.pid not in children
    ]
    # multiprocessing's resource tracker stays, as it does after any spawn (`--workers 2`)
    assert [c for c in left if "resource_tracker" not in c] == [], "worker processes are gone"
    assert shas(remote) == shas(local)
    assert sorted(shas(local)) == list(range(1, 9))
    cluster = json.loads(remote.stdout)["cluster"]
    assert cluster["workers"] == 2 and cluster["retried"] == []
    assert "cluster: 0 jobs retried after a lost worker" in remote.stderr
    # stopped: nothing listens where its scheduler was
    host, port = cluster["address"].split("tcp://")[1].rstrip(")").rsplit(":", 1)
    with pytest.raises(OSError), socket.create_connection((host, int(port)), timeout=2):
        pass


def test_suite_on_a_cluster_writes_the_run_folders_a_local_suite_writes(
    running_cluster: str, small_suite: Path, tmp_path: Path
) -> None:
    args = ("suite", small_suite, "--seeds", "1")
    local = paysim(*args, "--workers", "1", "--out", tmp_path / "local")
    remote = paysim(*args, "--cluster", running_cluster, "--out", tmp_path / "remote")
    assert local.exit_code == remote.exit_code == 0, remote.output
    assert f"cluster {running_cluster}: 2 workers" in remote.output

    def files(root: Path) -> dict[str, bytes]:
        found = {
            p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*"))
            if p.is_file() and p.name not in ("summary.json", "index.html")
        }
        return found

    mine, theirs = files(tmp_path / "local"), files(tmp_path / "remote")
    assert sorted(theirs) == sorted(mine)
    assert "reference/duplicates/seed-1/history.jsonl" in theirs
    assert [k for k in mine if mine[k] != theirs[k]] == []
    for summary in (tmp_path / "remote").rglob("summary.json"):  # the same, but for wall time
        twin = tmp_path / "local" / summary.relative_to(tmp_path / "remote")
        ours, local_summary = json.loads(summary.read_text()), json.loads(twin.read_text())
        assert {**ours, "wall_s": 0} == {**local_summary, "wall_s": 0}


def test_mutants_on_a_cluster_catch_what_they_catch_locally(
    running_cluster: str, small_suite: Path
) -> None:
    args = ("mutants", "--suite", small_suite, "--seeds", "1", "--json")
    local = json.loads(paysim(*args, "--workers", "1").stdout)
    remote = json.loads(paysim(*args, "--cluster", running_cluster).stdout)
    assert remote["mutants"] == local["mutants"]
    assert remote["reference"] == local["reference"]
    caught = {row["engine"] for row in remote["mutants"] if row["caught"]}
    assert "mutant:no-transition-guard" in caught
    assert remote["cluster"]["retried"] == []


def test_a_sweep_on_a_cluster_writes_its_run_folders_here(
    running_cluster: str, tmp_path: Path
) -> None:
    """`sweep(out_dir=...)` through the pool: each seed's folder sent back, as the local one."""
    from simulator.cluster.pool import ClusterPool
    from simulator.cluster.session import open_session
    from simulator.scenario_file import load_scenario
    from simulator.sweep import sweep

    scenario = load_scenario(DUPLICATES)
    local = list(sweep(scenario, [1, 2], "reference", out_dir=tmp_path / "local"))
    with open_session(running_cluster, "reference") as session, ClusterPool(session) as remote:
        assert remote.session.workers == 2
        there = list(sweep(scenario, [1, 2], "reference", out_dir=tmp_path / "remote", pool=remote))
    assert sorted(s["history_sha256"] for s in there) == sorted(s["history_sha256"] for s in local)
    for seed in (1, 2):
        history = f"seed-{seed}/history.jsonl"
        assert (tmp_path / "remote" / history).read_bytes() == (
            tmp_path / "local" / history
        ).read_bytes()


def test_coverage_on_a_local_cluster_is_the_figure_a_local_suite_gives(
    small_suite: Path, tmp_path: Path
) -> None:
    """`--coverage --cluster`: the workers' coverage comes back with their runs (it used to
    stay in the folder named on the client, which a remote worker does not have)."""
    args = ("suite", small_suite, "--seeds", "2", "--coverage")
    local = paysim(*args, "--workers", "1", "--out", tmp_path / "local")
    remote = paysim(*args, "--cluster", "local:2", "--out", tmp_path / "remote")
    assert local.exit_code == remote.exit_code == 0, remote.output
    mine = json.loads((tmp_path / "local" / "coverage.json").read_text())
    theirs = json.loads((tmp_path / "remote" / "coverage.json").read_text())
    assert mine["branches_reached"] > 0
    assert theirs == mine
    assert "engine coverage: " in remote.output
    # every data file was written here, from what the workers sent (coverage names a data file
    # after the process writing it); the bare-import probe writes one of its own
    data = [p.name for p in (tmp_path / "remote" / "coverage-data").glob(".coverage.*")]
    landed = [n for n in data if f".pid{os.getpid()}." in n]
    assert len(landed) == 2 and len(data) == 3, data


def test_a_worker_sends_its_coverage_back_and_writes_nothing_under_client_paths(
    tmp_path: Path,
) -> None:
    """What a worker on another machine does, run here: the job's coverage folder is a client
    path, so the worker measures into its own and ships the arcs by module name."""
    from reference_impl.reference_engine import ReferenceEngine
    from simulator.cluster.remote import run_shipped
    from simulator.engine_coverage import combine, engine_code
    from simulator.scenario_file import load_scenario
    from simulator.suite import Case, Job, run_job

    case = Case(load_scenario(DUPLICATES), str(DUPLICATES), 1, "duplicates")
    client = tmp_path / "client-coverage"
    shipped = run_shipped(run_job, Job(case, "reference", None, str(client)))
    assert not client.exists(), "the worker wrote to a client path"
    assert shipped.arcs and set(shipped.arcs) <= {
        "reference_impl.reference_engine",
        "reference_impl.seats",
    }
    shipped.land()
    assert len(list(client.glob(".coverage.*"))) == 1
    here = tmp_path / "here"
    run_job(Job(case, "reference", None, str(here)))
    code = engine_code(ReferenceEngine)
    landed = combine(client, code, tmp_path / "landed.json")
    measured = combine(here, code, tmp_path / "here.json")
    assert landed == measured and landed["branches_reached"] > 0


# ---- a lost worker


def test_a_lost_workers_jobs_are_retried_and_reported(
    running_cluster: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`dies_once` exits the first worker process that creates a purchase with it: the scheduler
    runs that worker's jobs again elsewhere; the histories are still those of a local run.
    Two jobs in flight at a time, so jobs also go out as others come back."""
    monkeypatch.setattr(pool, "MIN_WINDOW", 1)
    monkeypatch.setattr(pool, "JOBS_PER_THREAD", 1)
    monkeypatch.syspath_prepend(str(DATA / "engines"))  # here, and in the worker that restarts
    died = Path(os.environ["PAYSIM_DIE_ONCE"])  # set by the fixture, for its workers
    assert not died.exists()
    args = ("explore", DOUBLE_CLICK, "--seeds", "4", "--engine", "dies_once:factory", "--json")
    remote = paysim(*args, "--cluster", running_cluster)
    assert died.exists(), "a worker was killed"
    local = paysim(*args, "--workers", "1")
    assert shas(remote) == shas(local)
    retried = json.loads(remote.stdout)["cluster"]["retried"]
    assert retried, "the lost worker's jobs were reported"
    assert all(r["job"].startswith("seed ") and r["lost_worker"] for r in retried)
    first = retried[0]
    assert (
        f"worker {first['lost_worker']} lost while holding {first['job']}: retried on another "
        "worker" in remote.stderr
    )
    assert f"cluster: {len(retried)} job" in remote.stderr


# ---- bad input: exit 2, one line


def test_an_engine_the_workers_cannot_import_is_refused_before_any_run(
    running_cluster: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "only_here.py").write_text(
        (DATA / "engines" / "good_engine.py").read_text(), encoding="utf-8"
    )
    monkeypatch.chdir(tmp_path)  # importable here (the CLI adds the current folder), not there
    out = tmp_path / "out"
    args = ("suite", DUPLICATES.parent, "--engine", "only_here:factory", "--out", out)
    result = paysim(*args, "--cluster", running_cluster)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(
        "paysim: error: --engine only_here:factory: not importable on worker"
    )
    assert "No module named 'only_here'" in lines[0]
    assert not out.exists()


def test_an_unreachable_scheduler_is_one_line_exit_2() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = paysim("explore", DOUBLE_CLICK, "--seeds", "2", "--cluster", f"tcp://127.0.0.1:{port}")
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"paysim: error: --cluster tcp://127.0.0.1:{port}: cannot reach a scheduler there "
        "(Connection refused)"
    )


def test_a_run_folder_from_a_worker_stays_inside_the_run_folder(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "stale.png").write_bytes(b"an earlier run")
    write_run_folder(tmp_path / "run", {"summary.json": b"{}", "charts/a.png": b"png"})
    assert (tmp_path / "run" / "charts" / "a.png").read_bytes() == b"png"
    assert not (tmp_path / "run" / "stale.png").exists(), "replaced whole, as a local run is"
    for name in ("../escape.txt", "/etc/passwd", "charts/../../x"):
        with pytest.raises(ValueError, match="outside the run folder"):
            write_run_folder(tmp_path / "other", {"ok.json": b"{}", name: b"x"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"], "nothing written"


class _Answers:
    """A client whose workers answer the probe with `answers` (worker -> answer)."""

    def __init__(self, answers: dict[str, object]) -> None:
        self.answers = answers

    def run(self, fn: object, *args: object, on_error: str) -> dict[str, object]:
        assert fn is probe.probe_engine and on_error == "return"
        return self.answers


@pytest.mark.parametrize(
    ("answers", "message"),
    [
        ({}, "--cluster tcp://s:1: the scheduler has no workers"),
        (
            {"tcp://w:2": ModuleNotFoundError("No module named 'simulator'")},
            "--cluster tcp://s:1: worker tcp://w:2 cannot run paysim (ModuleNotFoundError: "
            "No module named 'simulator')",
        ),
        (
            {"tcp://w:2": {"version": "0.0.1", "error": ""}},
            "--cluster tcp://s:1: worker tcp://w:2 runs paysim 0.0.1, this client "
            f"{probe.paysim_version()}: install the same version on every machine",
        ),
    ],
)
def test_workers_without_paysim_or_with_another_version_are_refused(
    answers: dict[str, object], message: str
) -> None:
    with pytest.raises(ClusterError) as caught:
        probe.check_workers(_Answers(answers), "reference", "tcp://s:1")
    assert str(caught.value) == message


def test_workers_that_build_the_engine_in_the_same_version_pass() -> None:
    ok = {"version": probe.paysim_version(), "error": ""}
    assert probe.check_workers(_Answers({"tcp://a:1": ok, "tcp://b:1": ok}), "seed", "x") == 2
    assert probe.probe_engine("seed") == ok  # what a worker answers, run here
    assert "unknown engine 'nope'" in probe.probe_engine("nope")["error"]
