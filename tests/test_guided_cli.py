"""`paysim explore --guided`: a failing engine is found and shrunk, everything the search reached is
written and summed up in one line, and bad input is one line, exit 2, nothing written."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from simulator.cli import main
from tests.suitehelpers import CI_SUITE, ROOT

DATA = ROOT / "tests" / "data"
SMALL = CI_SUITE / "pay-after-cancel.toml"
SUMMARY = re.compile(
    r"^guided: (\d+) examples in [\d.]+ s, reached (\d+) new branches beyond the baseline "
    r"\((\d+) → (\d+) of (\d+)\), (\d+) corpus files(?: \(\d+ new\))?, (\d+) failures"
)


def paysim(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_a_failing_engine_is_found_shrunk_and_written_with_its_replay(tmp_path: Path) -> None:
    out = tmp_path / "g"
    engine = "mutant:no-transition-guard"
    result = paysim(
        "explore", "--guided", "--engine", engine, "--max-examples", "8", "--workers", "1",
        "--out", out, "--json",
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    data = json.loads(result.stdout)
    failures = {f["invariant"]: f for f in data["failures"]}
    assert "no_double_completion" in failures
    shrunk = failures["no_double_completion"]
    assert Path(shrunk["path"]) == out / "shrunk-no_double_completion.toml"
    assert Path(shrunk["path"]).read_text() == shrunk["scenario_toml"]
    replay = paysim("run", shrunk["path"], "--seed", shrunk["seed"], "--engine", engine,
                    "--out", tmp_path / "replay")  # fmt: skip
    assert replay.exit_code == 1
    assert "violated no_double_completion" in replay.stdout
    # the summary line, last on stderr, and its figures as the JSON and coverage.json have them
    match = SUMMARY.match(result.stderr.splitlines()[-1])
    assert match, result.stderr.splitlines()[-1]
    examples, new, before, after, total, files, failed = map(int, match.groups())
    assert (examples, failed) == (8, len(data["failures"]))
    # no --baseline: the baseline is what a bare import reaches (module-level code)
    assert before == data["baseline"]["branches_reached"] < after == data["branches_reached"]
    assert new == after - before > 0
    coverage = json.loads((out / "coverage.json").read_text())
    assert (coverage["branches_reached"], coverage["branches"]) == (after, total)
    assert files == data["corpus"]["files"] == len(list((out / "corpus").glob("*.toml"))) > 0
    # progress in a CI log: a line for each example that found something
    kept = data["corpus"]["new"][0]
    assert f"example {kept['example']}: +" in result.stderr
    assert f"→ {kept['file']}" in result.stderr
    html = (out / "report.html").read_text()
    assert "Guided search" in html and "Engine coverage" in html and "shrunk-no_double" in html
    assert json.loads((out / "guided.json").read_text())["summary"] == data["summary"]


def test_a_folder_of_scenarios_starts_the_search_and_a_corpus_is_reused(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    args = ("explore", "--guided", CI_SUITE, "--max-examples", "8", "--workers", "1",
            "--corpus", corpus)  # fmt: skip
    first = paysim(*args, "--out", tmp_path / "one", "--json")
    assert first.exit_code == 0, first.output
    assert "skipped " in first.stderr and "rolling-deploy-redis-locks.toml" in first.stderr
    kept = json.loads(first.stdout)["corpus"]["files"]
    assert kept > 0  # no baseline: the first starts reach everything they reach for the first time
    second = paysim(*args, "--out", tmp_path / "two", "--seed", "2", "--json")
    assert second.exit_code == 0, second.output
    assert f"{kept} runs of {kept} files replayed first" in second.stderr
    data = json.loads(second.stdout)
    assert data["replayed"] == kept and data["corpus"]["files"] >= kept


def test_the_same_options_give_the_same_corpus_in_any_process(tmp_path: Path) -> None:
    """Every choice is the search seed's: not the process's string hashing, not the clock."""

    def corpus(name: str, hash_seed: str, search_seed: str = "3") -> dict[str, bytes]:
        out = tmp_path / name
        subprocess.run(
            [sys.executable, "-c", "from simulator.cli import main; main()", "explore",
             "--guided", "--max-examples", "24", "--workers", "1", "--seed", search_seed,
             "--out", str(out)],
            env={**os.environ, "PYTHONHASHSEED": hash_seed}, cwd=ROOT, check=False,
            capture_output=True,
        )  # fmt: skip
        return {p.name: p.read_bytes() for p in sorted((out / "corpus").iterdir())}

    first = corpus("a", "1")
    assert len(first) > 2
    assert corpus("b", "2") == first
    assert corpus("c", "1", search_seed="4") != first


def test_a_cluster_finds_what_one_worker_finds(tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    args = ("explore", "--guided", SMALL, "--max-examples", "16", "--json")
    local = paysim(*args, "--workers", "1", "--out", tmp_path / "local")
    remote = paysim(*args, "--cluster", "local:2", "--out", tmp_path / "remote")
    assert local.exit_code == remote.exit_code == 0, remote.output
    assert json.loads(remote.stdout)["cluster"]["workers"] == 2

    def corpus(out: Path) -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in sorted((out / "corpus").iterdir())}

    assert corpus(tmp_path / "local") == corpus(tmp_path / "remote")
    assert len(corpus(tmp_path / "local")) > 1


def test_paysim_raising_on_a_scenario_is_kept_to_reproduce_and_exits_4(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import simulator.runner

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the harness broke")

    monkeypatch.setattr(simulator.runner, "run_scenario", broken)
    out = tmp_path / "g"
    result = paysim("explore", "--guided", SMALL, "--max-examples", "3", "--workers", "1",
                    "--out", out)  # fmt: skip
    assert result.exit_code == 4, result.output
    assert "paysim itself raised on" in result.stdout
    assert "RuntimeError: the harness broke" in (out / "paysim-error-1.txt").read_text()
    assert (out / "paysim-error-1.toml").is_file() and not (out / "paysim-error-2.toml").exists()


# ---- bad input


def _baselines(tmp: Path) -> dict[str, Path]:
    other = tmp / "other-engine.json"
    other.write_text(
        json.dumps(
            {
                "modules": ["reference_impl.seed_engine"],
                "files": {"reference_impl/seed_engine.py": {}},
            }
        )  # fmt: skip
    )
    (tmp / "not-json.json").write_text("{nope")
    (tmp / "empty-folder").mkdir()
    return {"other": other, "not-json": tmp / "not-json.json", "folder": tmp / "empty-folder"}


def _corpora(tmp: Path) -> dict[str, Path]:
    broken = tmp / "broken-corpus"
    broken.mkdir()
    (broken / "0001-seed-1.toml").write_text('name = "x"\n[[workload]]\ncuont = 3\n')
    manifest = tmp / "bad-manifest"
    manifest.mkdir()
    (manifest / "manifest.json").write_text('{"format": 99}')
    (tmp / "a-file").write_text("")
    return {"broken": broken, "manifest": manifest, "file": tmp / "a-file"}


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--guided", "--baseline", "{tmp}/missing.json"], "--baseline {tmp}/missing.json: no such file"),
        (["--guided", "--baseline", "{other}"], "none of the engine's modules"),
        (["--guided", "--baseline", "{not-json}"], "--baseline {not-json}: not JSON"),
        (["--guided", "--baseline", "{folder}"], "no coverage.json in the folder"),
        (["--guided", "--corpus", "{broken}"], "0001-seed-1.toml: workload[0].cuont: unknown key"),
        (["--guided", "--corpus", "{manifest}"], "not a paysim corpus manifest"),
        (["--guided", "--corpus", "{file}"], "--corpus {file}: exists and is not a folder"),
        (["--guided", "--seeds", "3"], "--seeds: with --guided and no SCENARIO"),
        (["--guided", str(CI_SUITE / "rolling-deploy-redis-locks.toml")], "virtual time only"),
        (["--guided", str(DATA / "scenarios" / "missing.toml")], "missing.toml: no such scenario"),
        (["--guided", "--time-budget", "0"], "'--time-budget'"),
        (["--guided", "--engine", "nope"], "--engine: unknown engine 'nope'"),
        (["--guided", "--cluster", "local:0"], "--cluster "),
        ([str(SMALL), "--seeds", "2", "--baseline", "x.json"], "--baseline is an option of the guided search"),
        ([str(SMALL), "--seeds", "2", "--time-budget", "5"], "--time-budget is an option of the guided"),
        ([str(SMALL), "--seeds", "2", "--corpus", "c"], "--corpus is an option of the guided"),
        ([str(SMALL), "--seeds", "2", "--seed", "4"], "--seed is an option of the guided"),
        ([str(SMALL)], "'--seeds'"),
        (["--seeds", "2"], "Missing argument 'SCENARIO'"),
    ],
)  # fmt: skip
def test_bad_input_exits_2_with_one_line_and_writes_nothing(
    args: list[str], named: str, tmp_path: Path
) -> None:
    names = {"tmp": tmp_path, **_baselines(tmp_path), **_corpora(tmp_path)}
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    args = [a.format(**names) for a in args]
    out = tmp_path / "out"
    result = paysim("explore", *args, "--out", out, "--workers", "1")
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert named.format(**names) in lines[0]
    assert result.stdout == ""
    assert not out.exists()
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_an_earlier_search_in_the_same_out_folder_is_replaced(tmp_path: Path) -> None:
    out = tmp_path / "g"
    args = ("explore", "--guided", SMALL, "--max-examples", "2", "--workers", "1", "--out", out)
    assert paysim(*args).exit_code == 0
    (out / "shrunk-stale.toml").write_text("")
    (out / "corpus" / "9999-seed-1.toml").write_text('name = "stale"\n')
    assert paysim(*args).exit_code == 0
    assert not (out / "shrunk-stale.toml").exists()
    assert not (out / "corpus" / "9999-seed-1.toml").exists()
    shutil.rmtree(out)
