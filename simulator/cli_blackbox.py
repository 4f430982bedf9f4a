"""`paysim serve` and `paysim blackbox`: an engine as an HTTP service, and a running service
put through the scenarios (registered on the main group by simulator/cli.py).

Exit codes as every paysim command: 0 all held, 1 an invariant violated (or a verdict
unknown or vacuous), 2 bad input or a target paysim cannot use (one line on stderr), 3 lock-wait
SLOs missed, 130 Ctrl-C. Whatever paysim started (the fake Stripe, the served engine, the
sinks) it stops before exiting, on every one of those paths.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import click

from simulator.cli import (
    Out,
    _leaf_exceptions,
    bad,
    checked_engine,
    checked_http_url,
    checked_out,
    checked_scenario,
    checked_secret,
    finish_suite,
    json_option,
    progress,
    run_line,
    serve_until_ctrl_c,
)
from simulator.scenario_file import ScenarioError
from simulator.suite import slug


@click.command()
@click.argument("engine", metavar="ENGINE")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=0,
    show_default=True,
    help="port on 127.0.0.1 to listen on (0: a free one)",
)
@click.option(
    "--stripe",
    "stripe_url",
    default=None,
    metavar="URL",
    help="the (fake) Stripe the engine calls, e.g. `paysim stripe serve`'s URL  "
    "[default: start a fake Stripe in this process, its webhooks going to this service]",
)
@click.option(
    "--secret",
    default="whsec_paysim",
    show_default=True,
    metavar="whsec_...",
    help="webhook signing secret the engine verifies Stripe-Signature with",
)
@click.option(
    "--program",
    "programs",
    multiple=True,
    metavar="ID:LIMIT",
    help="a program for sale and its class-rep seat limit (repeatable)  [default: prog_1:3]",
)
@click.option(
    "--sink",
    default=None,
    metavar="URL",
    help="POST fulfilments and receipts to this HTTP sink  [default: GET /paysim/ledger]",
)
@click.option(
    "--reconcile-every",
    type=click.FloatRange(min=0.1),
    default=5.0,
    show_default=True,
    help="seconds between the engine's reconcile sweeps",
)
def serve(
    engine: str,
    port: int,
    stripe_url: str | None,
    secret: str,
    programs: tuple[str, ...],
    sink: str | None,
    reconcile_every: float,
) -> int:
    """Serve ENGINE (reference, seed, mutant:*, module:factory) as an HTTP checkout service.

    Routes: POST /purchases, POST /purchases/ID/cancel, GET /success?session_id=..., POST
    /webhooks/stripe, GET /paysim/state, GET /paysim/ledger, POST /paysim/reset. Prints the
    base URL on stdout; Ctrl-C stops it.
    """

    from simulator.blackbox.served import ProgramSeed, ServeOptions

    engine = checked_engine(engine, "ENGINE")
    if stripe_url is not None:
        stripe_url = checked_http_url(stripe_url, "--stripe").rstrip("/")
    if sink is not None:
        sink = checked_http_url(sink, "--sink").rstrip("/")
    checked_secret(secret)
    seeds = tuple(_program(p) for p in programs) or (ProgramSeed("prog_1", 3),)
    options = ServeOptions(
        stripe_url=stripe_url or "",
        webhook_secret=secret,
        programs=seeds,
        port=port,
        reconcile_every_s=reconcile_every,
        sink_url=sink,
    )
    return serve_until_ctrl_c("paysim serve", port, _serve_until_cancelled, engine, options)


def _program(text: str) -> Any:
    from simulator.blackbox.served import ProgramSeed

    pid, _, limit = text.partition(":")
    if not pid or len(pid) > 200 or not limit.isdigit() or int(limit) > 1_000_000:
        bad(f"--program {text!r}: expected ID:LIMIT, e.g. prog_1:3")
    return ProgramSeed(pid, int(limit))


async def _serve_until_cancelled(engine: str, options: Any) -> None:
    from dataclasses import replace

    import trio

    from simulator.blackbox.served import serve_engine
    from simulator.blackbox.stripe_service import StripeServiceConfig, serve_fake_stripe
    from simulator.engines import resolve

    factory = resolve(engine)
    if options.stripe_url:
        async with serve_engine(factory, options) as served:
            _announce(served.url, options.stripe_url)
            await trio.sleep_forever()
    config = StripeServiceConfig(webhook_secret=options.webhook_secret, retry_compression=60.0)
    async with serve_fake_stripe(config) as stripe:
        served_options = replace(options, stripe_url=stripe.base_url)
        async with serve_engine(factory, served_options) as served:
            stripe.deliver_to(served.url + "/webhooks/stripe")
            _announce(served.url, stripe.base_url + " (in this process)")
            await trio.sleep_forever()


def _announce(url: str, stripe: str) -> None:
    click.echo(url)
    sys.stdout.flush()
    click.echo(f"paysim serve: engine at {url}; Stripe at {stripe}; Ctrl-C stops it", err=True)


@click.command()
@click.argument("path", metavar="SCENARIO_OR_DIR")
@click.option("--target", default=None, metavar="URL", help="the running service's base URL")
@click.option(
    "--serve",
    "serve_engine",
    default=None,
    metavar="ENGINE",
    help="start ENGINE as the service (reference, seed, mutant:*, module:factory), with the "
    "fake Stripe and sinks; also enables crash, pause and store faults",
)
@click.option(
    "--state",
    "state_uri",
    default=None,
    metavar="mongodb://HOST/DB",
    help="read the service's state from its MongoDB (mapped by [blackbox.state])  "
    "[default: its JSON state route]",
)
@click.option(
    "--seed",
    type=click.IntRange(0, 2**32 - 1),
    default=None,
    help="run only this seed  [default: each scenario's own `seeds`]",
)
@click.option(
    "--receipts",
    type=click.Choice(["http", "smtp"]),
    default="http",
    show_default=True,
    help="how a served engine (--serve) sends receipts to paysim's sink",
)
@click.option(
    "--stripe-port",
    type=click.IntRange(0, 65535),
    default=0,
    show_default=True,
    help="port of paysim's fake Stripe on 127.0.0.1 (0: a free one); a service started on its "
    "own points its Stripe API base there",
)
@click.option(
    "--sink-port",
    type=click.IntRange(0, 65535),
    default=0,
    show_default=True,
    help="port of paysim's fulfilment/receipt sink on 127.0.0.1 (0: a free one)",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("reports/blackbox"),
    show_default=True,
    help="folder for the run folders (<target>/<scenario>/seed-<N>) and index.html",
)
@click.option(
    "--junit",
    type=click.Path(path_type=Path),
    default=None,
    help="also write JUnit XML here: one testcase per scenario × seed",
)
@json_option
@click.pass_context
def blackbox(
    ctx: click.Context,
    path: str,
    target: str | None,
    serve_engine: str | None,
    state_uri: str | None,
    seed: int | None,
    receipts: str,
    stripe_port: int,
    sink_port: int,
    out: Path,
    junit: Path | None,
    as_json: bool,
) -> None:
    """Put a running checkout service through SCENARIO_OR_DIR, in wall-clock time, and judge it
    with the same invariants as a simulation."""
    from simulator.blackbox.driver import BlackboxError, Target
    from simulator.blackbox.runs import run_blackbox_case
    from simulator.suite import load_suite

    if (target is None) == (serve_engine is None):
        bad("give exactly one of --target URL and --serve ENGINE")
    if target is not None:
        target = checked_http_url(target, "--target")
    if serve_engine is not None:
        serve_engine = checked_engine(serve_engine, "--serve")
    if state_uri is not None and not state_uri.startswith(("mongodb://", "mongodb+srv://")):
        bad(f"--state {state_uri!r}: expected a mongodb:// URI")
    where = Path(path)
    try:
        scenarios = load_suite(where) if where.is_dir() else [(where, checked_scenario(path))]
    except ScenarioError as exc:
        bad(str(exc))
    if not scenarios:
        bad(f"{path}: no scenario files")
    checked_out(out)
    if junit is not None and junit.is_dir():
        bad(f"--junit {junit}: is a folder, expected a file name")
    chosen = Target(
        url=target,
        serve=serve_engine,
        state_uri=state_uri,
        receipts=receipts,
        stripe_port=stripe_port,
        sink_port=sink_port,
    )
    cases = [(p, sc, s) for p, sc in scenarios for s in ((seed,) if seed is not None else sc.seeds)]
    say = Out(as_json)
    results = []
    started = time.perf_counter()
    try:
        with progress(len(cases), f"blackbox {path} · {chosen.label}") as bar:
            for file, scenario, case_seed in cases:
                run_dir = out / slug(chosen.label) / slug(file.stem) / f"seed-{case_seed}"
                results.append(
                    run_blackbox_case(scenario, case_seed, chosen, run_dir, scenario_path=str(file))
                )
                bar.update(1, run_line(results[-1]))
    except BlackboxError as exc:
        bad(str(exc))
    except BaseException as exc:  # trio may wrap Ctrl-C in exception groups
        if any(isinstance(e, KeyboardInterrupt) for e in _leaf_exceptions(exc)):
            click.echo(
                "paysim blackbox: stopped (Ctrl-C); everything it started is stopped", err=True
            )
            ctx.exit(130)
        leaves = list(_leaf_exceptions(exc))
        known = [e for e in leaves if isinstance(e, BlackboxError | OSError)]
        if known:  # a target paysim cannot use, or a port it cannot listen on
            bad(
                str(known[0])
                if isinstance(known[0], BlackboxError)
                else f"cannot listen: {known[0]}"
            )
        raise
    elapsed = time.perf_counter() - started
    name = f"paysim blackbox {path} {chosen.label}"
    ctx.exit(finish_suite(say, results, out, junit, name, elapsed))
