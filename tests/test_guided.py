"""The guided search's parts: knobs that cover the schema, children that are valid and repeatable,
points that agree with coverage.json, baselines read back exactly, and a search that finds code
a small baseline never reached, keeps it in corpus files that replay to the same coverage, and
finds the same things whatever the number of workers."""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path

import pytest

from reference_impl.reference_engine import ReferenceEngine
from reference_impl.seed_engine import SeedEngine
from simulator.engine_coverage import combine, engine_code
from simulator.explore import sample_scenarios
from simulator.guided.baseline import BaselineError, load_baselines
from simulator.guided.corpus import CorpusError, CorpusWriter, read_corpus
from simulator.guided.job import GuidedJob, run_guided_job
from simulator.guided.mutation import (
    ITEM_KNOBS,
    KNOBS,
    MAX_USERS,
    NOT_EXPLORED,
    Mutator,
    explorable,
    users,
)
from simulator.guided.points import EngineShape, Points, engine_shape, points_of
from simulator.guided.search import BATCH, GuidedOptions, GuidedOutcome, GuidedSearch, Start
from simulator.runner import run_scenario
from simulator.scenario import Scenario
from simulator.scenario_file import load_scenario, scenario_to_toml, schema_fields
from simulator.sweep import LocalPool
from tests.suitehelpers import CI_SUITE

SMALL = CI_SUITE / "pay-after-cancel.toml"


@pytest.fixture(scope="module")
def shape() -> EngineShape:
    return engine_shape(engine_code(ReferenceEngine))


@pytest.fixture(scope="module")
def small_baseline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """coverage.json of one CI scenario, one seed: a baseline a search can go beyond."""
    tmp = tmp_path_factory.mktemp("baseline")
    run_scenario(load_scenario(SMALL), 1, "reference", tmp / "run", coverage_dir=tmp / "data")
    combine(tmp / "data", engine_code(ReferenceEngine), tmp / "coverage.json")
    return tmp / "coverage.json"


def search(
    out: Path, shape: EngineShape, baseline: Points, pool: LocalPool, **options: object
) -> GuidedOutcome:
    """A search from pay-after-cancel seed 1, its corpus in `out`."""
    starts = [Start(load_scenario(SMALL), 1, "start: pay-after-cancel seed 1")]
    opts = GuidedOptions("reference", **options)  # type: ignore[arg-type]
    writer = CorpusWriter(out, "reference", opts.seed)
    outcome = GuidedSearch(opts, shape, baseline, starts, writer, [], pool).run()
    writer.write_manifest()
    return outcome


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


# ---- knobs and children


def _leaves(cls: type, prefix: str = "") -> list[str]:
    out = []
    for f in schema_fields(cls):
        inner = f.hint
        args = [a for a in getattr(inner, "__args__", ()) if a is not type(None)]
        if dataclasses.is_dataclass(inner) or (
            len(args) == 1 and dataclasses.is_dataclass(args[0])
        ):
            target = inner if dataclasses.is_dataclass(inner) else args[0]
            out += [f"{prefix}{f.name}"] + _leaves(target, f"{prefix}{f.name}.")
        elif getattr(inner, "__origin__", None) is tuple and dataclasses.is_dataclass(args[0]):
            out += [f"{prefix}{f.name}"] + _leaves(args[0], f"{prefix}{f.name}[].")
        else:
            out.append(f"{prefix}{f.name}")
    return out


def test_every_scenario_key_is_a_knob_or_says_why_it_is_not() -> None:
    knobs = {path for section in KNOBS.values() for path in section}
    knobs |= {f"{array}[].{key}" for array, keys in ITEM_KNOBS.items() for key in keys}
    knobs |= set(ITEM_KNOBS)  # arrays: items added and removed
    unclassified = []
    for leaf in _leaves(Scenario):
        covered = any(leaf == k or leaf.startswith(k + ".") for k in (*knobs, *NOT_EXPLORED))
        parent = any(k.startswith(leaf + ".") for k in (*knobs, *NOT_EXPLORED))
        if not covered and not parent:
            unclassified.append(leaf)
    assert unclassified == []
    assert not knobs & set(NOT_EXPLORED)


def test_children_are_valid_small_repeatable_and_turn_many_knobs() -> None:
    parent = load_scenario(SMALL)
    donors = [load_scenario(p) for p in sorted(CI_SUITE.glob("*.toml"))[:4]]

    def children(seed: str) -> list[tuple[Scenario, int, tuple[str, ...]]]:
        mutator, scenario, run_seed, out = Mutator(random.Random(seed)), parent, 1, []
        for _ in range(150):
            child = mutator.child(scenario, run_seed, donors)
            out.append((child.scenario, child.seed, child.changes))
            scenario, run_seed = child.scenario, child.seed
        return out

    first = children("a")
    assert first == children("a")
    assert first != children("b")
    for scenario, _seed, changes in first:
        assert changes
        assert explorable(scenario)
        assert scenario.topology.locks != "redis"
        assert users(scenario) <= max(MAX_USERS, users(parent))
    turned = {c.split(" ")[0].split("[")[0].split(".")[0] for _, _, cs in first for c in cs}
    assert {"customers", "faults", "workload", "engine_config", "seed", "topology"} <= turned


def test_a_corpus_file_is_a_scenario_file_that_loads_back_equal(tmp_path: Path) -> None:
    for scenario, _seed in sample_scenarios(8, 3):
        path = tmp_path / "s.toml"
        path.write_text(scenario_to_toml(scenario))
        assert load_scenario(path) == scenario


# ---- points and baselines


def test_points_of_a_run_are_the_figures_coverage_json_gives(
    tmp_path: Path, shape: EngineShape
) -> None:
    scenario = load_scenario(CI_SUITE / "stripe-timeout-after-commit.toml")
    run = run_guided_job(GuidedJob(scenario, 1, "reference"))
    points = points_of(run.arcs, shape) | shape.at_import
    run_scenario(scenario, 1, "reference", tmp_path / "r", coverage_dir=tmp_path / "data")
    report = combine(tmp_path / "data", shape.code, tmp_path / "coverage.json")
    assert len(points.branches) == report["branches_reached"] < len(shape.every.branches)
    assert len(points.lines) == report["statements_reached"]
    assert len(shape.every.branches) == report["branches"]
    # and read back as a baseline, the file gives exactly these points
    assert load_baselines([tmp_path / "coverage.json"], shape).points == points


def test_a_baseline_of_another_engine_or_another_source_is_refused(
    tmp_path: Path, shape: EngineShape, small_baseline: Path
) -> None:
    seed_shape = engine_shape(engine_code(SeedEngine))
    with pytest.raises(BaselineError, match="none of the engine's modules"):
        load_baselines([small_baseline], seed_shape)
    data = json.loads(small_baseline.read_text())
    data["files"]["reference_impl/reference_engine.py"]["branches"] -= 1
    moved = tmp_path / "moved.json"
    moved.write_text(json.dumps(data))
    with pytest.raises(BaselineError, match="another version of the engine"):
        load_baselines([moved], shape)
    data = json.loads(small_baseline.read_text())
    data["files"]["reference_impl/reference_engine.py"]["unreached_branches"].pop()
    lying = tmp_path / "lying.json"
    lying.write_text(json.dumps(data))
    with pytest.raises(BaselineError, match="do not add up"):
        load_baselines([lying], shape)
    with pytest.raises(BaselineError, match="no coverage.json in the folder"):
        load_baselines([tmp_path], shape)


# ---- the search


def test_the_search_reaches_code_the_baseline_never_did_and_saves_it(
    tmp_path: Path, shape: EngineShape, small_baseline: Path
) -> None:
    baseline = load_baselines([small_baseline], shape).points
    with LocalPool(1) as pool:
        outcome = search(tmp_path / "corpus", shape, baseline, pool, max_examples=3 * BATCH)
    assert outcome.examples == 3 * BATCH
    assert outcome.beyond.branches, "a one-run baseline leaves branches a search reaches"
    assert not outcome.beyond.branches & baseline.branches
    kept = {e.corpus_file for e in outcome.kept}
    assert kept == {p.name for p in (tmp_path / "corpus").glob("*.toml")}
    manifest = json.loads((tmp_path / "corpus" / "manifest.json").read_text())
    assert [e["file"] for e in manifest["entries"]] == [e.corpus_file for e in outcome.kept]
    new = {(b["file"], b["from"], b["to"]) for e in manifest["entries"] for b in e["new_branches"]}
    assert new == outcome.beyond.branches
    # every corpus file replays (as `paysim run FILE` would: its own seed) to the same coverage
    for entry, example in zip(manifest["entries"], outcome.kept, strict=True):
        scenario = load_scenario(tmp_path / "corpus" / entry["file"])
        assert scenario.seeds == (entry["seed"],)
        replay = run_guided_job(GuidedJob(scenario, scenario.seeds[0], "reference"))
        points = points_of(replay.arcs, shape)
        assert points == example.points
        assert len(points.branches) == entry["branches_reached"]
        assert example.new <= points


def test_the_same_search_finds_the_same_corpus_on_one_worker_or_two(
    tmp_path: Path, shape: EngineShape, small_baseline: Path
) -> None:
    baseline = load_baselines([small_baseline], shape).points
    with LocalPool(1) as pool:
        search(tmp_path / "one", shape, baseline, pool, max_examples=2 * BATCH, seed=7)
        search(tmp_path / "other-seed", shape, baseline, pool, max_examples=2 * BATCH, seed=8)
    with LocalPool(2) as pool:
        search(tmp_path / "two", shape, baseline, pool, max_examples=2 * BATCH, seed=7)
    assert folder_bytes(tmp_path / "one") == folder_bytes(tmp_path / "two")
    assert folder_bytes(tmp_path / "one") != folder_bytes(tmp_path / "other-seed")


def test_a_time_budget_stops_between_batches_on_what_an_example_budget_finds(
    tmp_path: Path, shape: EngineShape, small_baseline: Path
) -> None:
    baseline = load_baselines([small_baseline], shape).points
    with LocalPool(1) as pool:
        timed = search(tmp_path / "t", shape, baseline, pool, max_examples=500, time_budget_s=1e-9)
        counted = search(tmp_path / "c", shape, baseline, pool, max_examples=1)
    assert timed.stopped_by == "time"
    assert timed.examples == counted.examples == 1  # the one start: the first batch always runs
    assert folder_bytes(tmp_path / "t") == folder_bytes(tmp_path / "c")


def test_a_reused_corpus_is_replayed_first_and_extended(
    tmp_path: Path, shape: EngineShape, small_baseline: Path
) -> None:
    baseline = load_baselines([small_baseline], shape).points
    corpus = tmp_path / "corpus"
    with LocalPool(1) as pool:
        first = search(corpus, shape, baseline, pool, max_examples=2 * BATCH)
        before = folder_bytes(corpus)
        existing = read_corpus(corpus)
        assert [f.name for f in existing] == sorted(e.corpus_file for e in first.kept)
        writer = CorpusWriter(corpus, "reference", 2)
        options = GuidedOptions("reference", seed=2, max_examples=BATCH)
        outcome = GuidedSearch(options, shape, baseline, [], writer, existing, pool).run()
        writer.write_manifest()
    assert outcome.replayed == len(existing)
    assert first.reached <= outcome.reached  # what the corpus reached is reached again
    manifest = json.loads((corpus / "manifest.json").read_text())
    names = [e["file"] for e in manifest["entries"]]
    assert names[: len(existing)] == [f.name for f in existing]
    assert all(
        before[name] == (corpus / name).read_bytes() for name in before if name != "manifest.json"
    )
    numbers = [int(n.split("-")[0]) for n in names]
    assert numbers == sorted(set(numbers))


def test_an_unreadable_corpus_is_one_line_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text("name = 3\n")
    with pytest.raises(CorpusError, match=r"a\.toml: name: expected a string"):
        read_corpus(tmp_path)
    (tmp_path / "a.toml").unlink()
    (tmp_path / "manifest.json").write_text("[1, 2]")
    with pytest.raises(CorpusError, match="not a paysim corpus manifest"):
        read_corpus(tmp_path)
    (tmp_path / "manifest.json").unlink()
    (tmp_path / "file").write_text("")
    with pytest.raises(CorpusError, match="exists and is not a folder"):
        read_corpus(tmp_path / "file")
