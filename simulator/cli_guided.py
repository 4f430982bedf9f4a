"""`paysim explore --guided`: the coverage-guided search from the command line.

Everything is checked before anything is written (the engine, SCENARIO, --corpus and every
--baseline against the engine's source): bad input is one line and exit 2, as for every command.
Then the search (`simulator.guided.search`) runs with a progress bar on a terminal, or a line per
example that found something (and every few others) in a CI log; then the failures are shrunk
and written by the path `explore --shrink` uses (`cli.write_failure`), and the run ends with
coverage.json, report.html, guided.json and the summary line.

What --guided does with the other options of `explore`: --seeds gives SCENARIO's starting runs
seeds 1..N; --workers and --cluster run the examples there (what is found does not depend on
either); --shrink (the default here) shrinks each failure, --no-shrink writes it as found;
--coverage changes nothing (the search always measures).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from simulator.cli import (
    DEFAULT_EXAMPLES,
    MAX_EXAMPLES,
    SHRINK_RUNS,
    Out,
    bad,
    checked_engine,
    checked_out,
    cluster_json,
    cluster_pool,
    progress,
    write_failure,
)
from simulator.scenario import Scenario
from simulator.scenario_file import ScenarioError, load_scenario, scenario_to_toml
from simulator.suite import check_engine, load_suite, seeds_for, worst

if TYPE_CHECKING:
    from simulator.guided.baseline import Baseline
    from simulator.guided.corpus import CorpusWriter
    from simulator.guided.points import EngineShape
    from simulator.guided.search import Example, GuidedOutcome, GuidedSearch, Start

#: what a guided search writes into --out; an earlier search's are removed first
OUTPUTS = ("coverage.json", "report.html", "guided.json")
OUTPUT_PREFIXES = ("shrunk-", "failure-", "paysim-error-")
#: progress lines in a CI log: every example that found something, else one per this share
LINE_EVERY = 50


@dataclass(frozen=True)
class GuidedArgs:
    scenario: str | None
    seeds: int | None
    workers: int
    cluster: str | None
    engine: str
    shrink: bool
    max_examples: int | None
    baselines: tuple[Path, ...]
    corpus: Path | None
    time_budget: float | None
    search_seed: int | None
    out: Path | None
    as_json: bool


def guided_explore(ctx: click.Context, a: GuidedArgs) -> int:
    """Check, search, write; returns the exit code (1 a failure, 4 paysim failed, else 0)."""
    from simulator.engine_coverage import engine_code
    from simulator.guided.baseline import BaselineError, load_baselines
    from simulator.guided.corpus import CorpusError, CorpusWriter, read_corpus
    from simulator.guided.points import engine_shape
    from simulator.guided.search import GuidedOptions, GuidedSearch, default_out

    engine = checked_engine(a.engine)
    starts, skipped = _starts(a)
    max_examples = a.max_examples or (MAX_EXAMPLES if a.time_budget else DEFAULT_EXAMPLES)
    out = checked_out(a.out or default_out(engine))
    if a.corpus is not None:
        checked_out(a.corpus, "--corpus")
    try:
        existing = read_corpus(a.corpus) if a.corpus is not None else []
    except CorpusError as exc:
        bad(str(exc))
    shape = engine_shape(engine_code(check_engine(engine)))
    try:
        baseline = load_baselines(list(a.baselines), shape)
    except BaselineError as exc:
        bad(str(exc))
    say = Out(a.as_json)
    search_seed = 1 if a.search_seed is None else a.search_seed
    corpus_dir = a.corpus if a.corpus is not None else out / "corpus"
    for line in skipped:
        say.say(line)
    for name in baseline.unmeasured:
        say.say(f"baseline: no figures for {name}: counted as reached nowhere")
    writer = CorpusWriter(corpus_dir, engine, search_seed)
    label = f"guided search · {engine}" + (f" · until {a.time_budget:g} s" if a.time_budget else "")
    with ExitStack() as stack:
        remote = stack.enter_context(cluster_pool(a.cluster, engine, say))
        if remote is None:
            from simulator.sweep import LocalPool

            pool: Any = stack.enter_context(LocalPool(a.workers, a.workers))
        else:
            pool = remote
        _clear_earlier(out, corpus_dir if a.corpus is None else None)  # every check passed
        bar = stack.enter_context(progress(max_examples, label, every=LINE_EVERY))

        def on_example(example: Example, search: GuidedSearch) -> None:
            if example.number == 0:
                return
            news = _news(example, search)
            bar.update(1, f"example {example.number}: {news}", always=news != "nothing new")

        search = GuidedSearch(
            GuidedOptions(engine, search_seed, max_examples, a.time_budget),
            shape,
            baseline.points,
            starts,
            writer,
            existing,
            pool,
            generate=a.scenario is None,
            on_example=on_example,
        )
        outcome = search.run()
        cluster_info = cluster_json(remote) if remote is not None else None
    if outcome.replayed:
        say.say(
            f"corpus {corpus_dir}: {outcome.replayed} runs of {len(existing)} files replayed first"
        )
    return _finish(out, engine, search_seed, outcome, shape, baseline, writer, a, say, cluster_info)


def _starts(a: GuidedArgs) -> tuple[list[Start], list[str]]:
    """The starting inputs from SCENARIO (a file, or a folder of them), and lines saying which
    files a folder had that the search cannot run."""
    from simulator.guided.search import Start

    if a.scenario is None:
        if a.seeds is not None:
            bad(
                "--seeds: with --guided and no SCENARIO the search draws its own scenarios and "
                "seeds (--seed seeds the search); give a SCENARIO to start from its seeds 1..N"
            )
        return [], []
    path = Path(a.scenario)
    loaded: list[tuple[Path, Scenario]]
    try:
        loaded = load_suite(path) if path.is_dir() else [(path, load_scenario(path))]
    except ScenarioError as exc:
        bad(str(exc))
    skipped, starts = [], []
    for file, scenario in loaded:
        if scenario.topology.locks == "redis":
            if not path.is_dir():
                bad(
                    f'{file}: topology.locks = "redis" runs in wall-clock time; the guided '
                    "search runs in virtual time only"
                )
            skipped.append(f"skipped {file}: Redis locks run in wall-clock time")
            continue
        for seed in seeds_for(scenario, a.seeds):
            starts.append(Start(scenario, seed, f"start: {file.name} seed {seed}"))
    if not starts:
        bad(f"{a.scenario}: no scenario the guided search can run (all lock on Redis)")
    return starts, skipped


def _news(example: Example, search: GuidedSearch) -> str:
    parts = []
    if example.new.branches or example.new.lines:
        parts.append(
            f"+{len(example.new.branches)} branches, +{len(example.new.lines)} lines → "
            f"{example.corpus_file} (reached {search.branches_reached()} of "
            f"{len(search.shape.every.branches)})"
        )
    first = [i for i in example.violated if search.failures.get(i) is example]
    if first:
        parts.append("first to violate " + ", ".join(first))
    if example.error and example in search.errors:
        parts.append("paysim raised: " + example.error.strip().splitlines()[-1])
    return "; ".join(parts) or "nothing new"


def _clear_earlier(out: Path, own_corpus: Path | None) -> None:
    """An earlier search's outputs in --out (and its corpus, unless --corpus named one to reuse)
    go, so that nothing of it is mistaken for this search's."""
    if not out.is_dir():
        return
    for name in OUTPUTS:
        (out / name).unlink(missing_ok=True)
    for path in out.iterdir():
        if path.name.startswith(OUTPUT_PREFIXES):
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
    if own_corpus is not None and own_corpus.is_dir():
        shutil.rmtree(own_corpus)


def _finish(
    out: Path,
    engine: str,
    search_seed: int,
    outcome: GuidedOutcome,
    shape: EngineShape,
    baseline: Baseline,
    writer: CorpusWriter,
    a: GuidedArgs,
    say: Out,
    cluster_info: dict[str, Any] | None,
) -> int:
    from simulator.engine_coverage import combine, summary_line
    from simulator.guided.corpus import branch_rows
    from simulator.guided.points import Points, write_arcs
    from simulator.guided.report import figures, write_report
    from simulator.guided.report import summary_line as guided_line

    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="paysim-guided-coverage-") as tmp:
        arcs = {shape.files[m]: a_ for m, a_ in outcome.arcs.items() if m in shape.files}
        write_arcs(Path(tmp), arcs)
        coverage = combine(Path(tmp), shape.code, out / "coverage.json")
    say.say(f"everything the search ran: {summary_line(coverage)}")
    failures = []
    for invariant, example in sorted(outcome.failures.items()):
        origin = f"from example {example.number}" if example.number else "from the corpus"
        written = write_failure(
            engine, invariant, example.scenario, example.seed, out, say, origin=origin,
            examples=example.number, shrink_runs=SHRINK_RUNS if a.shrink else None,
            show_toml=False,
        )  # fmt: skip
        failures.append({"invariant": invariant, "example": example.number, **written})
    errors = []
    for n, example in enumerate(outcome.errors, start=1):
        path = out / f"paysim-error-{n}.toml"
        path.write_text(scenario_to_toml(example.scenario), encoding="utf-8")
        (out / f"paysim-error-{n}.txt").write_text(example.error or "", encoding="utf-8")
        last = (example.error or "").strip().splitlines()[-1:] or [""]
        replay = f"paysim run {path} --seed {example.seed} --engine {engine}"
        say.say(f"paysim itself raised on {path} (seed {example.seed}): {last[0]}")
        say.say(f"  traceback: {path.with_suffix('.txt')}; replay: {replay}")
        errors.append({"path": str(path), "seed": example.seed, "error": last[0], "replay": replay})
    f = figures(outcome, shape)
    writer.write_manifest()
    corpus_files = writer.files_on_disk()
    line = guided_line(outcome, f, corpus_files, len(outcome.kept))
    summary = {
        "engine": engine,
        "search_seed": search_seed,
        "examples": outcome.examples,
        "replayed": outcome.replayed,
        "elapsed_s": round(outcome.elapsed_s, 3),
        "stopped_by": outcome.stopped_by,
        "baseline": {
            "sources": list(baseline.sources),
            "branches_reached": f.branches_before,
            "lines_reached": f.lines_before,
            "unmeasured": list(baseline.unmeasured),
        },
        "branches": f.branches_total,
        "branches_reached": f.branches_after,
        "lines": f.lines_total,
        "lines_reached": f.lines_after,
        "new_branches": branch_rows(Points(outcome.beyond.branches), shape),
        "new_lines": len(outcome.beyond.lines),
        "corpus": {
            "folder": str(writer.folder),
            "files": corpus_files,
            "new": [
                {
                    **e,
                    "replay": f"paysim run {writer.folder / e['file']} --engine {engine} --coverage",
                }
                for e in writer.entries
                if e["file"] in {k.corpus_file for k in outcome.kept}
            ],
        },
        "failures": failures,
        "errors": errors,
        "coverage": str(out / "coverage.json"),
        "summary": line,
        **({"cluster": cluster_info} if cluster_info else {}),
    }
    report = write_report(out, outcome, shape, summary, out / "coverage.json")
    summary["report"] = str(report)
    (out / "guided.json").write_text(
        json.dumps(summary, indent=1, sort_keys=True, default=str) + "\n", encoding="utf-8"
    )
    say.say(f"corpus: {writer.folder} ({writer.folder / 'manifest.json'})")
    say.say(f"report: {report}")
    say.say(line)
    say.json(summary)
    codes = [1 if failures else 0, 4 if errors else 0]
    return worst(codes)
