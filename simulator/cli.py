"""The `paysim` command line (click); the contract is DESIGN.md's "CLI contract".

Exit codes: 0 every invariant held and thresholds met; 1 an invariant violated, a verdict
unknown or a run vacuous; 2 bad input, reported as ONE line on stderr naming the file, key or
option (and nothing is written); 3 thresholds missed while every invariant held; 4 a run is
incomplete: its own infrastructure failed (a Redis the scenario did not take down), so there is
no verdict on the engine. A command over many runs exits with the worst of them (2, 1, 4, 3, 0).

`--json` puts machine-readable output alone on stdout; the human text then goes to stderr.
Seeds: `--seeds K` means seeds 1..K for every scenario; without it a suite runs each scenario's
own `seeds` list. An engine is a built-in name (`paysim engines`) or `package.module:factory`,
imported with the current directory on the import path.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
import threading
import time
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import click

from reference_impl.registry import UnknownEngine
from simulator.engine_errors import describe_errors
from simulator.engines import engine_names
from simulator.run_folder import INTERRUPTED, RunFolderError, interrupted, partial_dir
from simulator.scenario import Scenario
from simulator.scenario_file import ScenarioError, load_scenario
from simulator.suite import (
    CaseResult,
    caught_by,
    check_engine,
    exit_code_of,
    slug,
    worst,
)
from simulator.tested import tested_lines
from simulator.topology import DEFAULT_REDIS_URL

#: failing seeds listed one line each by `explore`; the rest are counted
MAX_SEED_LINES = 50
#: upper bounds of numeric options (shown in --help): past them a command would run for hours
#: or exhaust memory (a 100,000-purchase load peaks near 250 MB; 10^9 reached 4 GB in 40 s)
MAX_WORKERS = 64
MAX_SEEDS = 100_000
MAX_EXAMPLES = 10_000
DEFAULT_EXAMPLES = 200
#: runs a greedy shrink of a known failure may make (`explore.shrink_known`)
SHRINK_RUNS = 24
MAX_PURCHASES = 100_000
MAX_CONCURRENCY = 10_000
MAX_LIMIT = 1_000_000
DEFAULT_WORKERS = max(1, min(8, os.cpu_count() or 1))
ENGINE_HELP = (
    "engine under test: a built-in name (see `paysim engines`: reference, seed, mutant:*) "
    "or package.module:factory for your own engine"
)


class BadInput(click.ClickException):
    """Bad input: one line on stderr, exit code 2, nothing written."""

    exit_code = 2


class PaysimGroup(click.Group):
    """Turns every usage error into one line on stderr and every command result into an exit code."""

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        argv = list(args[0] if args and args[0] is not None else kwargs.get("args") or sys.argv[1:])
        main_thread = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGTERM, _terminate) if main_thread else None
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except click.exceptions.NoArgsIsHelpError as exc:
            exc.show()
            code = exc.exit_code
        except click.ClickException as exc:
            where = (
                exc.ctx.command_path if isinstance(exc, click.UsageError) and exc.ctx else "paysim"
            )
            message = one_line(exc.format_message())
            click.echo(f"{where}: error: {message}", err=True)
            if "--json" in argv:  # a script asked for JSON: it gets an error object, not silence
                click.echo(json.dumps({"error": message, "exit_code": 2, "command": where}))
            code = 2
        except (click.Abort, KeyboardInterrupt):
            code = _interrupted()
        except BaseExceptionGroup as group:  # trio wraps a Ctrl-C in the run's task group
            if group.subgroup(KeyboardInterrupt) is None:
                raise
            code = _interrupted()
        finally:
            if main_thread:
                signal.signal(signal.SIGTERM, previous)
        code = code if isinstance(code, int) else 0
        if not standalone_mode:
            return code
        sys.exit(code)


def _terminate(signum: int, frame: object) -> None:
    """SIGTERM ends a command as Ctrl-C does: through trio's own KeyboardInterrupt path, so
    cleanup runs (Redis keys, the run folder marked INTERRUPTED) and the exit code is 130."""
    _quiet()  # the command now ends in _interrupted(): quiet from here, not only from there
    handler = signal.getsignal(signal.SIGINT)
    if callable(handler):  # trio's Ctrl-C handler in a run, Python's default_int_handler outside
        handler(signal.SIGINT, frame)
        return
    # SIGINT ignored (a background job): trio installed no handler of its own, so do what it
    # would. A KeyboardInterrupt raised here while trio is in KI-protected code (its run loop,
    # a nursery's bookkeeping, the harness's sleep) breaks trio's invariants: the run dies of
    # a TrioInternalError instead of unwinding. There, ask trio to deliver it at a checkpoint.
    trio = sys.modules.get("trio")  # not imported: not in a trio run
    if trio is not None and trio.lowlevel.in_trio_run() and trio.lowlevel.currently_ki_protected():
        trio._core._run.GLOBAL_RUN_CONTEXT.runner.deliver_ki()  # noqa: SLF001 - trio's own path
        return
    raise KeyboardInterrupt


def _quiet() -> None:
    # tasks cut short leave coroutines and generators behind; their "never awaited" warnings and
    # "Exception ignored" notes at exit would bury the one line _interrupted() writes
    warnings.simplefilter("ignore")
    sys.unraisablehook = lambda _unraisable: None


def _interrupted() -> int:
    _quiet()
    click.echo(
        "paysim: interrupted (exit 130); an unfinished run folder is marked INTERRUPTED", err=True
    )
    return 130


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def bad(message: str) -> NoReturn:
    raise BadInput(one_line(message))


# ---------------------------------------------------------------- shared options and checks

engine_option = click.option(
    "--engine",
    default="reference",
    show_default=True,
    metavar="NAME|module:factory",
    help=ENGINE_HELP,
)
json_option = click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="print machine-readable JSON on stdout (text goes to stderr)",
)
workers_option = click.option(
    "--workers",
    type=click.IntRange(1, MAX_WORKERS),
    default=DEFAULT_WORKERS,
    show_default=True,
    help="worker processes running seeds in parallel (ignored with --cluster)",
)
cluster_option = click.option(
    "--cluster",
    default=None,
    metavar="tcp://HOST:PORT|local:N",
    help="run the jobs on the workers of a running Dask scheduler (paysim installed in the "
    "same version there), or start N local worker processes with local:N to try it",
)

coverage_option = click.option(
    "--coverage",
    "with_coverage",
    is_flag=True,
    help="measure which of the engine's own lines and branches ran (coverage.py, branch mode) "
    "and write coverage.json plus a report section",
)


def coverage_data(folder: Path) -> Path:
    """A fresh folder for the runs' coverage data files (stale ones would inflate the figure)."""
    import shutil

    data = folder / "coverage-data"
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    return data


def coverage_report(engine: str, data: Path, out_file: Path, say: Out) -> dict[str, Any]:
    """Combine the data files into `out_file` and say the figure."""
    from simulator.engine_coverage import combine, engine_code, summary_line

    report = combine(data, engine_code(check_engine(engine)), out_file)
    say.say(summary_line(report))
    say.say(f"coverage: {out_file}")
    return report


def checked_engine(spec: str, option: str = "--engine") -> str:
    """The engine spec, proven to resolve and build an engine; else bad input naming `option`."""
    if ":" in spec and not spec.startswith("mutant:") and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # like `python -m`: the user's own modules import
    try:
        check_engine(spec)
    except UnknownEngine as exc:
        bad(f"{option}: {exc}")
    return spec


def checked_scenario(path: str) -> Scenario:
    try:
        return load_scenario(path)
    except ScenarioError as exc:
        bad(str(exc))


def checked_infrastructure(scenario: Scenario, path: str) -> None:
    """A scenario that locks on Redis needs one answering before the run (as `load` checks):
    without it every create would be busy and the run would judge nothing."""
    if scenario.topology.locks != "redis":
        return
    from simulator.load import check_redis
    from simulator.topology import redis_url_for

    try:
        check_redis(redis_url_for(scenario.topology.redis_url))
    except ConnectionError as exc:
        bad(f'{path}: topology.locks = "redis": {exc}')


def checked_out(path: Path, option: str = "--out") -> Path:
    if path.exists() and not path.is_dir():
        bad(f"{option} {path}: exists and is not a folder")
    return path


#: what `check` and `report` need: both refuse a folder missing any of them (one rule for both)
RUN_FILES = ("summary.json", "scenario.toml", "history.jsonl", "final_state.json", "ledgers.json")


def checked_run_dir(run_dir: Path, needs: Sequence[str]) -> None:
    if not run_dir.is_dir():
        bad(f"{run_dir}: not a run folder")
    why = interrupted(run_dir)
    if why is not None:
        bad(f"{run_dir / INTERRUPTED}: {why}; run it again (nothing here can be judged)")
    for name in needs:
        if not (run_dir / name).is_file():
            bad(f"{run_dir / name}: missing (not a complete paysim run folder)")


class Out:
    """Human text to stdout, or to stderr when stdout carries JSON."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json

    def say(self, text: str = "") -> None:
        click.echo(text, err=self.as_json)

    def json(self, data: Any) -> None:
        if self.as_json:
            click.echo(json.dumps(data, indent=1, sort_keys=True, default=str))


class LineProgress:
    """Progress without a terminal (a CI log): one line on stderr per finished unit, with the
    count so far, so a long command is never silent for minutes."""

    def __init__(self, length: int, label: str, every: int = 1) -> None:
        self.length, self.label, self.every, self.done = length, label, every, 0
        click.echo(f"{label}: {length} to do", err=True)

    def update(self, n: int = 1, line: str | None = None, always: bool = False) -> None:
        """`always`: this one is news (a search found something): said whatever `every` is."""
        before, self.done = self.done, self.done + n
        if always or self.done // self.every > before // self.every or self.done >= self.length:
            click.echo(f"[{self.done}/{self.length}] {line or self.label}", err=True)


class BarProgress:
    """A progress bar on a terminal; `line` (what just finished) is not needed there."""

    def __init__(self, bar: Any) -> None:
        self.bar = bar

    def update(self, n: int = 1, line: str | None = None, always: bool = False) -> None:
        self.bar.update(n)


@contextmanager
def cluster_pool(address: str | None, engine: str, say: Out) -> Iterator[Any]:
    """A `ClusterPool` on `--cluster` (None without it); cluster errors are bad input (exit 2).

    Every worker is checked for `engine` first; a job a lost worker held is retried by the
    scheduler and said on stderr as it happens, and counted at the end.
    """
    if address is None:
        yield None
        return
    from simulator.cluster import ClusterError
    from simulator.cluster.pool import ClusterPool
    from simulator.cluster.session import open_session

    try:
        with (
            open_session(address, engine) as session,
            ClusterPool(session, on_retry=lambda r: click.echo(r.line(), err=True)) as pool,
        ):
            say.say(f"cluster {session.label}: {session.workers} workers")
            yield pool
            retried = len(pool.retried)
            say.say(
                f"cluster: {retried} job{'s' * (retried != 1)} retried after a lost worker"
                + (": " + "; ".join(r.job for r in pool.retried) if retried else "")
            )
    except ClusterError as exc:
        bad(str(exc))


def cluster_json(pool: Any) -> dict[str, Any]:
    """What `--json` says of the cluster: where, how many workers, which jobs were retried."""
    return {
        "address": pool.session.label,
        "workers": pool.session.workers,
        "retried": [r.as_dict() for r in pool.retried],
    }


@contextmanager
def progress(length: int, label: str, every: int = 1) -> Iterator[LineProgress | BarProgress]:
    """A bar on a terminal; a line per `every` finished units on stderr otherwise."""
    if not sys.stderr.isatty():
        yield LineProgress(length, label, every)
        return
    with click.progressbar(length=length, label=label, file=sys.stderr, show_pos=True) as bar:
        yield BarProgress(bar)


def run_line(result: CaseResult) -> str:
    """A finished run in one line, for a progress log."""
    return describe(result.summary)[0]


def describe(summary: dict[str, Any], run_dir: Path | None = None) -> list[str]:
    """A run in a few lines: verdict, what broke, the seed and the replay command."""
    code = exit_code_of(summary)
    label = {0: "PASS", 3: "SLO MISSED"}.get(code, str(summary["verdict"]).upper())
    lines = [f"{label:10} {summary['scenario']} · seed {summary['seed']} · {summary['engine']}"]
    if summary.get("infrastructure"):
        lines.append(f"  {summary['infrastructure']} (not an engine verdict)")
    violations = summary.get("violations") or []
    for name, count in Counter(v["invariant"] for v in violations).items():
        first = next(v for v in violations if v["invariant"] == name)
        more = f" (+{count - 1} more)" if count > 1 else ""
        lines.append(f"  violated {name}: {one_line(first['detail'])}{more}")
    lines += describe_errors(summary.get("engine_errors") or [])
    for text in summary.get("vacuous") or []:
        lines.append(f"  vacuous: {text}")
    for name, status in sorted((summary.get("invariants") or {}).items()):
        if status == "unknown":
            lines.append(f"  unknown {name}: the checker could not decide")
    for miss in summary["thresholds"].get("misses") or []:
        lines.append(f"  threshold missed: {miss}")
    lines += tested_lines(summary)
    if code != 0:
        lines.append(f"  seed: {summary['seed']}")
        lines.append(f"  replay: {summary['replay']}")
    if run_dir is not None:
        lines.append(f"  report: {run_dir / 'report.html'}")
    return lines


def broken(summary: dict[str, Any]) -> str:
    """What made a run fail, in a few words: invariants, vacuity, undecided checkers, SLOs."""
    parts = sorted({v["invariant"] for v in summary.get("violations") or []})
    if summary.get("vacuous"):
        parts.append("vacuous")
    parts += [
        f"{k}?" for k, st in sorted((summary.get("invariants") or {}).items()) if st == "unknown"
    ]
    if not summary["thresholds"]["met"]:
        parts.append("thresholds missed")
    return ", ".join(parts) or "-"


def tally(results: Sequence[CaseResult]) -> str:
    codes = Counter(r.exit_code for r in results)
    verdicts = Counter(r.summary["verdict"] for r in results)
    return (
        f"{len(results)} runs: {codes[0]} pass, {verdicts['fail']} fail, "
        f"{verdicts['unknown']} unknown, {codes[3]} thresholds missed"
        + (f", {codes[4]} incomplete (infrastructure)" if codes[4] else "")
    )


# ---------------------------------------------------------------- commands


@click.group(
    cls=PaysimGroup,
    help="paysim: deterministic simulation and concurrency testing for payment engines.\n\n"
    "Exit codes: 0 all invariants held and thresholds met; 1 an invariant violated (or a "
    "verdict unknown, or a run vacuous); 2 bad input; 3 thresholds missed, invariants held; "
    "4 incomplete: the run's own infrastructure failed (no engine verdict).",
)
@click.version_option(package_name="paysim", prog_name="paysim")
def main() -> None:
    pass


@main.command(help="List the built-in engines: reference, seed, and mutant:* (known-bad variants).")
def engines() -> None:
    for name, description in engine_names():
        click.echo(f"{name:36} {description}")


@main.command()
@click.argument("scenario")
@click.option(
    "--seed",
    type=click.IntRange(0, 2**32 - 1),
    default=None,
    help="seed of the run  [default: the scenario's first seed]",
)
@engine_option
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="run folder to write  [default: reports/runs/<scenario file>/<engine>/seed-<N>]",
)
@coverage_option
@json_option
@click.pass_context
def run(
    ctx: click.Context,
    scenario: str,
    seed: int | None,
    engine: str,
    out: Path | None,
    with_coverage: bool,
    as_json: bool,
) -> None:
    """Run SCENARIO (a TOML file) once and judge it.

    Writes summary.json, history.jsonl, charts/*.png, report.html and scenario.toml.
    """
    from simulator.suite import run_case

    loaded = checked_scenario(scenario)
    checked_infrastructure(loaded, scenario)
    engine = checked_engine(engine)
    seed = loaded.seeds[0] if seed is None else seed
    run_dir = checked_out(
        out or Path("reports/runs") / slug(Path(scenario).stem) / slug(engine) / f"seed-{seed}"
    )
    say = Out(as_json)
    with tempfile.TemporaryDirectory(prefix="paysim-coverage-") as tmp:
        # outside the run folder: a run's folder is staged and moved in place whole
        data = Path(tmp) if with_coverage else None
        outcome = run_case(
            loaded,
            seed,
            engine,
            run_dir,
            scenario_path=scenario,
            coverage_dir=data,
            report=not data,
        )
        if data is not None:
            from simulator.scenario_file import scenario_to_toml
            from simulator.suite import render

            coverage_report(engine, data, run_dir / "coverage.json", say)
            render(run_dir, outcome.summary, scenario_to_toml(loaded))
    say.json(outcome.summary)
    for line in describe(outcome.summary, run_dir):
        say.say(line)
    ctx.exit(outcome.exit_code)


@main.command()
@click.argument("directory", metavar="DIR")
@click.option(
    "--seeds",
    type=click.IntRange(1, MAX_SEEDS),
    default=None,
    help="run seeds 1..K of every scenario  [default: each scenario's own `seeds`]",
)
@engine_option
@click.option(
    "--junit",
    type=click.Path(path_type=Path),
    default=None,
    help="also write JUnit XML here: one testcase per scenario × seed",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("reports/suite"),
    show_default=True,
    help="folder for the run folders (<engine>/<scenario>/seed-<N>) and index.html",
)
@workers_option
@cluster_option
@coverage_option
@click.option(
    "--charts",
    type=click.Choice(["failing", "all", "none"]),
    default="failing",
    show_default=True,
    help="which runs' reports get PNG charts: those that did not pass (what a CI reader opens; "
    "drawing a run's charts costs far more than running it), every run, or none; "
    "`paysim report RUN_DIR` draws one run's later",
)
@json_option
@click.pass_context
def suite(
    ctx: click.Context,
    directory: str,
    seeds: int | None,
    engine: str,
    junit: Path | None,
    out: Path,
    workers: int,
    cluster: str | None,
    with_coverage: bool,
    charts: str,
    as_json: bool,
) -> None:
    """Run every scenario file in DIR (and its subfolders) under its seeds; gate CI on the exit code."""
    from simulator.suite import load_suite, run_suite, suite_cases

    try:
        cases = suite_cases(load_suite(Path(directory)), Path(directory), seeds)
    except ScenarioError as exc:
        bad(str(exc))
    engine = checked_engine(engine)
    checked_out(out)
    if junit is not None and junit.is_dir():
        bad(f"--junit {junit}: is a folder, expected a file name")
    say = Out(as_json)
    data = coverage_data(out) if with_coverage else None
    (out / "coverage.json").unlink(missing_ok=True)
    started = time.perf_counter()
    with (
        cluster_pool(cluster, engine, say) as pool,
        progress(len(cases), f"suite {directory} · {engine}") as bar,
    ):
        results = run_suite(
            cases,
            engine,
            out,
            workers=workers,
            on_result=lambda r: bar.update(1, run_line(r)),
            executor=pool,
            coverage_dir=data,
            charts=charts,
        )
    if data is not None:
        coverage_report(engine, data, out / "coverage.json", say)
    elapsed = time.perf_counter() - started
    ctx.exit(finish_suite(say, results, out, junit, f"paysim {directory} {engine}", elapsed))


def finish_suite(
    say: Out,
    results: Sequence[CaseResult],
    out: Path,
    junit: Path | None,
    name: str,
    elapsed_s: float,
) -> int:
    """Index, per-run lines (failures in full), tally, JUnit and JSON of a finished suite;
    returns its exit code (the worst of its runs)."""
    from simulator.junit import write_junit
    from simulator.suite import index_rows
    from simulator.suite_index import write_index

    index = write_index(out, index_rows(results))
    for result in results:
        if result.exit_code == 0:
            say.say(describe(result.summary)[0])
        else:
            for line in describe(result.summary, result.run_dir):
                say.say(line)
            off = result.summary.get("faults_off") or []
            if off:
                say.say(f"  faults off (they need control of the target): {', '.join(off)}")
    say.say(tally(results))
    say.say(f"index: {index}")
    if junit is not None:
        write_junit(
            junit,
            [
                (r.summary, r.run_dir / "report.html" if r.run_dir else None, r.seconds)
                for r in results
            ],
            suite=name,
            elapsed_s=elapsed_s,
        )
        say.say(f"junit: {junit}")
    say.json([{**r.summary, "run_dir": str(r.run_dir)} for r in results])
    return worst(r.exit_code for r in results)


@main.command()
@click.argument("scenario", required=False)
@click.option(
    "--seeds",
    type=click.IntRange(1, MAX_SEEDS),
    default=None,
    help="sweep seeds 1..N of the scenario (required without --guided; with --guided: the "
    "starting runs are SCENARIO under seeds 1..N instead of its own `seeds`)",
)
@workers_option
@cluster_option
@engine_option
@click.option(
    "--shrink/--no-shrink",
    default=None,
    help="after the sweep, let Hypothesis generate scenarios and shrink a failure of the same "
    "invariant (any invariant if the sweep found none) to a minimal scenario + seed; with "
    "--guided, shrink the first failure of each invariant the search found  "
    "[default: --no-shrink; with --guided: --shrink]",
)
@click.option(
    "--max-examples",
    type=click.IntRange(1, MAX_EXAMPLES),
    default=None,
    help="with --shrink: scenarios Hypothesis tries before giving up; with --guided: examples "
    "the search runs  [default: 200; with --guided and --time-budget: "
    f"{MAX_EXAMPLES:,}]",
)
@click.option(
    "--guided",
    is_flag=True,
    help="coverage-guided search: run scenarios (mutations of SCENARIO, of every scenario in "
    "SCENARIO if it is a folder, or, without one, scenarios Hypothesis draws), keep each that "
    "reaches engine branches or lines no earlier run reached as a scenario file in the corpus, "
    "mutate those further, shrink the failures; ends with coverage.json and report.html "
    "(it always measures: --coverage changes nothing)",
)
@click.option(
    "--baseline",
    "baselines",
    multiple=True,
    type=click.Path(path_type=Path),
    metavar="coverage.json|DIR",
    help="with --guided: what counts as reached already: a coverage.json of the same engine "
    "(as `paysim suite DIR --coverage --out FOLDER` writes in FOLDER), or a folder holding one; "
    "repeatable",
)
@click.option(
    "--corpus",
    type=click.Path(path_type=Path),
    default=None,
    metavar="DIR",
    help="with --guided: the corpus folder to replay first and extend (reused across runs, as a "
    "fuzzer's is)  [default: a fresh corpus/ in --out]",
)
@click.option(
    "--time-budget",
    type=click.FloatRange(1, 7 * 86400),
    default=None,
    metavar="SECONDS",
    help="with --guided: stop after this many seconds (checked between batches of examples)",
)
@click.option(
    "--seed",
    "search_seed",
    type=click.IntRange(0, 2**32 - 1),
    default=None,
    help="with --guided: seed of the search (which mutations and run seeds it tries); the same "
    "seed and options give the same corpus  [default: 1]",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="where --shrink writes the shrunk scenario and its run, and --guided everything it "
    "writes  [default: reports/explore/<scenario file>; with --guided: "
    "reports/explore/guided/<engine>]",
)
@coverage_option
@json_option
@click.pass_context
def explore(
    ctx: click.Context,
    scenario: str | None,
    seeds: int | None,
    workers: int,
    cluster: str | None,
    engine: str,
    shrink: bool | None,
    max_examples: int | None,
    guided: bool,
    baselines: tuple[Path, ...],
    corpus: Path | None,
    time_budget: float | None,
    search_seed: int | None,
    out: Path | None,
    with_coverage: bool,
    as_json: bool,
) -> None:
    """Sweep SCENARIO over seeds 1..N in parallel and report which seeds fail, and why.

    With --shrink, also search for a minimal failing scenario and write it as TOML, ready to
    replay with the printed command.

    With --guided, search instead for scenarios that reach engine code no earlier run reached
    (beyond --baseline, e.g. the CI suite's coverage.json): SCENARIO (a file or a folder of
    them) is where the search starts, and is optional. Each scenario that adds coverage is
    saved as a replayable scenario file in the corpus; every failure is shrunk; the last line
    says how many branches it reached beyond the baseline. Exit 1 if an invariant broke.
    """
    if guided:
        from simulator.cli_guided import GuidedArgs, guided_explore

        args = GuidedArgs(
            scenario, seeds, workers, cluster, engine, True if shrink is None else shrink,
            max_examples, baselines, corpus, time_budget, search_seed, out, as_json,
        )  # fmt: skip
        ctx.exit(guided_explore(ctx, args))
    for given, option in (
        (baselines, "--baseline"),
        (corpus, "--corpus"),
        (time_budget, "--time-budget"),
        (search_seed, "--seed"),
    ):
        if given:
            raise click.UsageError(f"{option} is an option of the guided search: add --guided", ctx)
    if scenario is None:
        raise click.UsageError(
            "Missing argument 'SCENARIO' (or --guided to search without one)", ctx
        )
    if seeds is None:
        raise click.UsageError(
            "Missing option '--seeds' (the seeds to sweep; or --guided for a coverage-guided "
            "search)",
            ctx,
        )
    shrink = bool(shrink)
    max_examples = max_examples or DEFAULT_EXAMPLES
    import shutil

    from simulator.sweep import sweep

    loaded = checked_scenario(scenario)
    checked_infrastructure(loaded, scenario)
    engine = checked_engine(engine)
    out = checked_out(out or Path("reports/explore") / slug(Path(scenario).stem))
    say = Out(as_json)
    data = coverage_data(out) if with_coverage else None
    summaries: list[dict[str, Any]] = []
    with (
        tempfile.TemporaryDirectory(prefix="paysim-sweep-") as tmp,
        cluster_pool(cluster, engine, say) as pool,
        progress(seeds, f"explore {scenario} · {engine}") as bar,
    ):
        for summary in sweep(
            loaded,
            range(1, seeds + 1),
            engine,
            workers=min(workers, seeds),
            out_dir=Path(tmp) if pool is None else None,  # a cluster would send them back
            scenario_path=scenario,
            pool=pool,
            coverage_dir=data,
        ):
            shutil.rmtree(Path(tmp) / f"seed-{summary['seed']}", ignore_errors=True)
            summaries.append(summary)
            bar.update(1, f"seed {summary['seed']}: {summary['verdict']} {broken(summary)}")
        cluster_info = cluster_json(pool) if pool is not None else None
    summaries.sort(key=lambda s: s["seed"])  # a cluster returns them as they finish
    codes = [exit_code_of(s) for s in summaries]
    failing = [s for s in summaries if exit_code_of(s) != 0]
    for summary in failing[:MAX_SEED_LINES]:
        say.say(f"seed {summary['seed']:<8} {summary['verdict']:8} {broken(summary)}")
    if len(failing) > MAX_SEED_LINES:
        say.say(f"... and {len(failing) - MAX_SEED_LINES} more failing seeds (--json lists all)")
    if failing:
        say.say("first failing seed:")
        for line in describe(failing[0]):
            say.say(line)
    say.say(
        f"{seeds} seeds of {loaded.name} on {engine}: {codes.count(0)} pass, "
        f"{sum(1 for c in codes if c == 1)} fail or unknown, {codes.count(3)} thresholds missed"
    )
    if data is not None:
        coverage_report(engine, data, out / "coverage.json", say)
    shrunk = None
    if shrink:
        violated = Counter(v["invariant"] for s in summaries for v in s.get("violations") or [])
        target = violated.most_common(1)[0][0] if violated else None
        caught = [s["seed"] for s in failing if not target or target in caught_by(s)]
        fallback = (loaded, caught[0]) if caught else None
        shrunk = _shrink(engine, target, max_examples, out, say, fallback)
        if shrunk is not None:
            codes.append(1)
    say.json(
        {
            "summaries": summaries,
            "failing_seeds": [s["seed"] for s in failing],
            "shrunk": shrunk,
            **({"cluster": cluster_info} if cluster_info else {}),
        }
    )
    ctx.exit(worst(codes))


def _shrink(
    engine: str,
    invariant: str | None,
    max_examples: int,
    out: Path,
    say: Out,
    fallback: tuple[Scenario, int] | None,
) -> dict[str, Any] | None:
    """Hypothesis search + shrink; else the sweep's own first failing seed, shrunk greedily.
    Writes out/shrunk-<invariant>.toml and its run folder."""
    from simulator.explore import search

    goal = invariant or "any invariant"
    with progress(max_examples, f"searching for a minimal failure of {goal}") as bar:
        found = search(
            engine,
            max_examples=max_examples,
            invariant=invariant,
            on_example=lambda n: bar.update(1, f"example {n}") if n <= max_examples else None,
        )
    if found is not None:
        origin, examples = f"after {found.examples} examples", found.examples
        scenario, seed = found.scenario, found.seed
    elif fallback is not None:
        scenario, seed = fallback
        origin, examples = f"from the sweep's failing seed {seed}", 0
        say.say(
            f"Hypothesis found no failure of {goal} in {max_examples} generated scenarios; "
            f"shrinking the sweep's first failing seed ({seed}) instead"
        )
    else:
        say.say(f"no failure of {goal} found in {max_examples} generated scenarios")
        return None
    # Hypothesis has shrunk its find already (only faults that never fired may remain)
    budget = len(scenario.faults) if found is not None else SHRINK_RUNS
    return write_failure(
        engine, invariant, scenario, seed, out, say, origin=origin, examples=examples,
        shrink_runs=budget,
    )  # fmt: skip


def write_failure(
    engine: str,
    invariant: str | None,
    scenario: Scenario,
    seed: int,
    out: Path,
    say: Out,
    *,
    origin: str,
    examples: int,
    shrink_runs: int | None = SHRINK_RUNS,
    show_toml: bool = True,
) -> dict[str, Any]:
    """A failing scenario shrunk greedily (`explore.shrink_known`, at most `shrink_runs` runs)
    and written as out/shrunk-<invariant>.toml — out/failure-<invariant>.toml as it is when
    `shrink_runs` is None — with its run folder beside it; said with its replay command."""
    from dataclasses import replace

    from simulator.explore import shrink_known, still_fails
    from simulator.scenario_file import scenario_to_toml
    from simulator.suite import run_case

    shrunk = shrink_runs is not None
    name = slug(f"{'shrunk' if shrunk else 'failure'}-{invariant or 'any'}")
    # judged on invariants alone, as the search and the shrink judged it
    scenario = replace(
        scenario,
        name=name,
        description=f"Found by paysim explore on {engine} {origin}: violates {invariant or 'an invariant'}.",
        seeds=(seed,),
        expect=(),
        expect_fail=(),
    )
    if shrink_runs:
        scenario = shrink_known(
            scenario,
            seed,
            lambda candidate: still_fails(candidate, seed, engine, invariant),
            max_runs=shrink_runs,
        )
    toml = scenario_to_toml(scenario)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.toml"
    path.write_text(toml, encoding="utf-8")
    outcome = run_case(scenario, seed, engine, out / name, scenario_path=str(path))
    say.say(f"{'shrunk' if shrunk else 'failing'} {origin}: {path} (seed {seed})")
    if show_toml:
        say.say(toml.rstrip("\n"))
    for line in describe(outcome.summary, out / name):
        say.say(line)
    return {
        "path": str(path),
        "seed": seed,
        "examples": examples,
        "scenario_toml": toml,
        "replay": outcome.summary["replay"],
        "summary": outcome.summary,
    }


@main.command()
@click.option(
    "--suite",
    "suite_dir",
    default="scenarios/ci",
    show_default=True,
    metavar="DIR",
    help="the suite every mutant must fail",
)
@click.option(
    "--seeds",
    type=click.IntRange(1, MAX_SEEDS),
    default=None,
    help="seeds 1..K of every scenario  [default: each scenario's own `seeds`]",
)
@workers_option
@cluster_option
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("reports/mutants"),
    show_default=True,
    help="where --coverage writes coverage.json (of the reference engine's runs)",
)
@coverage_option
@json_option
@click.pass_context
def mutants(
    ctx: click.Context,
    suite_dir: str,
    seeds: int | None,
    workers: int,
    cluster: str | None,
    out: Path,
    with_coverage: bool,
    as_json: bool,
) -> None:
    """Mutation-test the suite: every mutant:* engine must be caught, the reference must pass.

    Seeds run in rounds (round n = the n-th seed of every scenario), a round's runs in suite
    order with its wall-clock (Redis) runs last; a mutant is killed by the first run that
    violates an invariant, and seeds-to-detection is that run's round. Exits 1 if any mutant
    survives or the reference fails on the same seeds.
    """
    from simulator.detection import Detection, by_round, detect
    from simulator.mutants import MUTANTS
    from simulator.suite import Job, Workers, load_suite, suite_cases

    try:
        cases = suite_cases(load_suite(Path(suite_dir)), Path(suite_dir), seeds)
    except ScenarioError as exc:
        bad(str(exc))
    rounds = by_round(cases)
    say = Out(as_json)
    data = coverage_data(checked_out(out)) if with_coverage else None
    total = len(cases) * (1 + len(MUTANTS))
    rows: list[dict[str, Any]] = []
    with (
        cluster_pool(cluster, "reference", say) as remote,
        Workers(workers, remote) as pool,
        progress(total, f"mutants × {suite_dir}") as bar,
    ):
        heard: Counter[str] = Counter()  # runs reported, per engine

        def ran(result: CaseResult) -> None:
            heard[result.summary["engine"]] += 1
            bar.update(1, run_line(result))

        def settled(found: Detection) -> None:
            verdict = "caught" if found.caught else "SURVIVED"
            bar.update(len(cases) - heard[found.engine], f"{found.engine} {verdict}")

        detections, reference = detect(
            [f"mutant:{m.name}" for m in MUTANTS.values()],
            rounds,
            pool,
            ran,
            also=[Job(c, "reference", None, str(data) if data else None) for c in cases],
            on_found=settled,
        )
        for mutant, found in zip(MUTANTS.values(), detections, strict=True):
            rows.append(
                {
                    "engine": found.engine,
                    "caught": found.caught,
                    "invariants": found.invariants,
                    "expected": list(mutant.violates),
                    "as_expected": bool(set(found.invariants) & set(mutant.violates)),
                    "seeds_to_detection": found.seeds_to_detection,
                    "runs": found.runs,
                    "replay": found.first["replay"] if found.first else None,
                }
            )
        cluster_info = cluster_json(remote) if remote is not None else None
    ref_bad = [r for r in reference if r.summary["verdict"] != "pass"]
    say.say(f"{'engine':40} {'caught':7} {'seeds':5}  by")
    say.say(
        f"{'reference':40} {'-':7} {'-':5}  "
        + (
            f"PASS on all {len(reference)} runs"
            if not ref_bad
            else f"FAIL on {len(ref_bad)} of {len(reference)} runs"
        )
    )
    for row in rows:
        caught = "yes" if row["caught"] else "NO"
        rounds_ = str(row["seeds_to_detection"] or "-")
        by = ", ".join(row["invariants"]) or "survived: no invariant broke"
        note = (
            ""
            if row["as_expected"] or not row["caught"]
            else f" (expected {', '.join(row['expected'])})"
        )
        say.say(f"{row['engine']:40} {caught:7} {rounds_:5}  {by}{note}")
    for result in ref_bad:
        for line in describe(result.summary):
            say.say(line)
    if data is not None:
        coverage_report("reference", data, out / "coverage.json", say)
    survivors = [r["engine"] for r in rows if not r["caught"]]
    say.say(
        f"{len(rows) - len(survivors)} of {len(rows)} mutants caught"
        + (f"; survivors: {', '.join(survivors)}" if survivors else "")
    )
    say.json(
        {
            "reference": {
                "runs": len(reference),
                "passed": len(reference) - len(ref_bad),
                "failing": [r.summary for r in ref_bad],
            },
            "mutants": rows,
            **({"cluster": cluster_info} if cluster_info else {}),
        }
    )
    ctx.exit(1 if survivors or ref_bad else 0)


@main.command()
@click.option(
    "--purchases",
    type=click.IntRange(1, MAX_PURCHASES),
    default=200,
    show_default=True,
    help="purchases in total (N)",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, MAX_CONCURRENCY),
    default=20,
    show_default=True,
    help="C buyers arrive at once (a herd), the rest steadily at C per second",
)
@click.option(
    "--instances",
    type=click.IntRange(1, 64),
    default=2,
    show_default=True,
    help="engine instances (K)",
)
@click.option(
    "--locks",
    type=click.Choice(["memory", "shared", "redis"]),
    default="memory",
    show_default=True,
    help="memory: a lock table per instance (the seed's design); shared: one in-memory lock "
    "service for all; redis: Redis at --redis-url (implies --wall-clock)",
)
@click.option(
    "--redis-url",
    envvar="REDIS_URL",
    default=DEFAULT_REDIS_URL,
    show_default=True,
    help="Redis for --locks redis (env REDIS_URL)",
)
@click.option("--wall-clock", is_flag=True, help="run in real time instead of virtual time")
@click.option(
    "--limit",
    type=click.IntRange(0, MAX_LIMIT),
    default=None,
    help="class-rep seats for sale  [default: half the purchases]",
)
@click.option(
    "--clicks",
    type=click.IntRange(1, 100),
    default=2,
    show_default=True,
    help="times each herd buyer clicks Buy at once (1: no two requests share a purchase lock)",
)
@click.option(
    "--seed",
    type=click.IntRange(0, 2**32 - 1),
    default=1,
    show_default=True,
    help="seed of the run",
)
@engine_option
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("reports/load"),
    show_default=True,
    help="run folder to write (summary.json, charts, report.html, scenario.toml)",
)
@click.option("--force", is_flag=True, help="replace the run already in --out")
@json_option
@click.pass_context
def load(
    ctx: click.Context,
    purchases: int,
    concurrency: int,
    instances: int,
    locks: str,
    redis_url: str,
    wall_clock: bool,
    limit: int | None,
    clicks: int,
    seed: int,
    engine: str,
    out: Path,
    force: bool,
    as_json: bool,
) -> None:
    """Load-test an engine: N purchases at concurrency C on K instances; report lock waits.

    Exit 3 when the lock-wait SLOs (mean < 50 ms, timeouts < 0.1 %) are missed.
    """
    from simulator.load import CreateProgress, LoadSpec, check_redis, load_scenario_for
    from simulator.suite import run_case

    engine = checked_engine(engine)
    checked_out(out)
    if out.is_dir() and any(out.iterdir()) and not force:
        bad(
            f"--out {out}: holds an earlier run; pass --force to replace it, or choose another --out"
        )
    say = Out(as_json)
    if locks == "redis":
        try:
            check_redis(redis_url)
        except ConnectionError as exc:
            bad(f"--redis-url: {exc}")
        if not wall_clock:
            say.say("note: --locks redis runs in wall-clock time (Redis expires keys in real time)")
            wall_clock = True
    spec = LoadSpec(purchases, concurrency, instances, locks, redis_url, wall_clock, limit, clicks)
    scenario = load_scenario_for(spec)
    label = f"load {purchases} purchases ({spec.requests} requests) · {engine}"
    with (
        progress(spec.requests, label, every=max(1, spec.requests // 20)) as bar,
        CreateProgress(partial_dir(out) / "history.jsonl", lambda n: bar.update(n, label)),
    ):
        outcome = run_case(scenario, seed, engine, out, wall_clock=wall_clock)
    summary = outcome.summary
    say.json(summary)
    for line in describe(summary, out):
        say.say(line)
    elapsed = summary["wall_s"] if wall_clock else summary["virtual_s"]
    clock = "wall-clock" if wall_clock else "virtual"
    ops = summary["counts"].get("operations", {})
    say.say(
        f"  {purchases} purchases ({spec.herd} buyers at once clicking {clicks}×: "
        f"{spec.requests} purchase requests) on {instances} instances, {locks} locks: run took "
        f"{elapsed:.1f} s ({clock}); operations "
        + ", ".join(f"{k} {v}" for k, v in sorted(ops.items()))
    )
    say.say(
        f"  {'lock family':24} {'count':>7} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} "
        f"{'max ms':>8} {'timeouts':>8}"
    )
    for family, row in sorted(summary["lock_wait_ms"].items()):
        cells = " ".join(f"{_ms(row.get(k)):>8}" for k in ("p50", "p95", "p99", "max"))
        say.say(f"  {family:24} {row.get('count', 0):>7} {cells} {row.get('timeouts', 0):>8}")
    ctx.exit(outcome.exit_code)


def _ms(value: Any) -> str:
    return f"{value:.1f}" if isinstance(value, int | float) else "-"


@main.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@json_option
@click.pass_context
def check(ctx: click.Context, run_dir: Path, as_json: bool) -> None:
    """Re-run the checkers on a stored run (RUN_DIR) without re-running it.

    Reads RUN_DIR/scenario.toml, history.jsonl, final_state.json and ledgers.json; prints the
    verdict (and says so when it differs from the stored summary.json, which is left unchanged).
    """
    from simulator.judge import judge_dir

    checked_run_dir(run_dir, RUN_FILES)
    scenario = checked_scenario(str(run_dir / "scenario.toml"))
    stored = _stored_summary(run_dir)
    try:
        judgement = judge_dir(run_dir, scenario)
    except RunFolderError as exc:
        bad(str(exc))
    summary = {
        **stored,
        "verdict": judgement.verdict,
        "violations": judgement.violations,
        "invariants": judgement.invariants,
        "vacuous": judgement.vacuous,
        "lock_wait_ms": judgement.lock_wait_ms,
        "thresholds": judgement.thresholds,
        "quiescent": judgement.quiescent,
        "history_sha256": judgement.history_sha256,
    }
    say = Out(as_json)
    say.json(summary)
    for line in describe(summary):
        say.say(line)
    if stored and stored.get("verdict") != judgement.verdict:
        say.say(
            f"  note: summary.json says {stored.get('verdict')}; the checkers now say {judgement.verdict}"
        )
    if stored.get("history_sha256") not in (None, judgement.history_sha256):
        say.say(
            "  note: history.jsonl changed since the run (its sha256 differs from summary.json)"
        )
    ctx.exit(exit_code_of(summary))


@main.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
def report(run_dir: Path) -> None:
    """Rebuild RUN_DIR/charts/*.png and RUN_DIR/report.html from a stored run."""
    from simulator.run_folder import read_history, read_json_object
    from simulator.suite import render

    checked_run_dir(run_dir, RUN_FILES)
    summary = _stored_summary(run_dir)
    toml = (run_dir / "scenario.toml").read_text(encoding="utf-8", errors="replace")
    try:  # every line proven well-formed before the charts read them
        read_json_object(run_dir / "final_state.json")
        for _ in read_history(run_dir / "history.jsonl"):
            pass
        page = render(run_dir, summary, toml)
    except RunFolderError as exc:
        bad(str(exc))
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        bad(f"{run_dir / 'history.jsonl'}: holds entries a run does not write: {exc!r}")
    click.echo(f"report: {page}")


def _stored_summary(run_dir: Path) -> dict[str, Any]:
    from simulator.run_folder import read_json_object

    path = run_dir / "summary.json"
    try:
        data = read_json_object(path)
    except RunFolderError as exc:
        bad(str(exc))
    missing = [k for k in ("verdict", "scenario", "seed", "engine", "thresholds") if k not in data]
    if missing:
        bad(f"{path}: not a paysim summary (no {', '.join(missing)})")
    return data


# ---------------------------------------------------------------- the fake Stripe over HTTP


@main.group(help="The fake Stripe as a real HTTP server, for services in any language.")
def stripe() -> None:
    pass


@stripe.command("serve")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=0,
    show_default=True,
    help="port on 127.0.0.1 to listen on (0: a free one)",
)
@click.option(
    "--webhook-url",
    default=None,
    metavar="URL",
    help="the service's webhook endpoint: every event is POSTed there, signed",
)
@click.option(
    "--secret",
    default="whsec_paysim",
    show_default=True,
    metavar="whsec_...",
    help="webhook signing secret (the service verifies Stripe-Signature with it)",
)
@click.option(
    "--scenario",
    "scenario_path",
    default=None,
    metavar="FILE",
    help="take Stripe latency, webhook mode and the Stripe/webhook fault schedule from FILE",
)
@click.option(
    "--retry-compression",
    type=click.FloatRange(min=1.0, max=1e6),
    default=1.0,
    show_default=True,
    help="run Stripe's webhook retry schedule this many times faster",
)
def stripe_serve(
    port: int,
    webhook_url: str | None,
    secret: str,
    scenario_path: str | None,
    retry_compression: float,
) -> int:
    """Serve the fake Stripe over HTTP until Ctrl-C; print its base URL.

    Point an official SDK at the URL (stripe-python: base_addresses={"api": URL}; stripe-node:
    host, port, protocol "http"). The customer pays on POST URL/_paysim/checkout/SESSION_ID
    (action=pay_card|decline|decline_then_pay|bank_debit|abandon|expire); GET URL/_paysim/ledger
    shows sessions, payment intents, refunds, events and every webhook delivery attempt.
    """

    from simulator.blackbox.console import printer
    from simulator.blackbox.stripe_service import StripeServiceConfig, run_until_cancelled

    if webhook_url is not None:
        webhook_url = checked_http_url(webhook_url, "--webhook-url")
    checked_secret(secret)
    loaded = checked_scenario(scenario_path) if scenario_path is not None else None
    config = StripeServiceConfig(
        port=port,
        webhook_url=webhook_url,
        webhook_secret=secret,
        scenario=loaded,
        retry_compression=retry_compression,
        seed=loaded.seeds[0] if loaded is not None else 1,
        record=printer(lambda line: click.echo(line, err=True)),
    )

    def announce(service: Any) -> None:
        click.echo(service.base_url)
        sys.stdout.flush()
        click.echo(
            f"paysim stripe serve: fake Stripe at {service.base_url}; webhooks to "
            f"{webhook_url or '(none)'}; Ctrl-C stops it",
            err=True,
        )
        applied, ignored = service.fault_kinds()
        if applied or ignored:
            line = f"paysim stripe serve: faults from {scenario_path}: {', '.join(applied) or '-'}"
            if ignored:
                line += f"; not applied (no engine instance to act on): {', '.join(ignored)}"
            click.echo(line, err=True)

    return serve_until_ctrl_c("paysim stripe serve", port, run_until_cancelled, config, announce)


def serve_until_ctrl_c(name: str, port: int, main: Any, *args: Any) -> int:
    """`trio.run(main, *args)` for a server command: 130 on Ctrl-C (everything it started is
    stopped by then), one line and exit 2 when the port cannot be listened on."""
    import trio

    try:
        trio.run(main, *args)
    except BaseException as exc:  # trio may wrap these in exception groups
        leaves = list(_leaf_exceptions(exc))
        if any(isinstance(e, KeyboardInterrupt) for e in leaves):
            click.echo(f"{name}: stopped (Ctrl-C)", err=True)
            return 130
        error = next((e for e in leaves if isinstance(e, OSError)), None)
        if error is None:
            raise
        bad(f"--port {port}: cannot listen on 127.0.0.1:{port} ({error.strerror or error})")
    return 0


def _leaf_exceptions(exc: BaseException) -> Iterator[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from _leaf_exceptions(inner)
    else:
        yield exc


def checked_secret(secret: str) -> str:
    if not secret.startswith("whsec_") or not 6 < len(secret) <= 200 or not secret.isprintable():
        bad("--secret: must look like whsec_... (printable, at most 200 characters)")
    return secret


def checked_http_url(url: str, option: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or len(url) > 2000:
        bad(f"{option} {url!r}: not an http(s) URL with a host")
    return url


# black-box mode's own commands live in their module; registered last (it imports from here)
from simulator.cli_blackbox import blackbox, serve  # noqa: E402

main.add_command(serve)
main.add_command(blackbox)
