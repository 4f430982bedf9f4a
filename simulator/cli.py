"""The `paysim` command line (click)."""

from __future__ import annotations

import click

from simulator.engines import engine_names


@click.group(help="paysim: deterministic simulation and concurrency testing for payment engines.")
def main() -> None:
    pass


@main.command(help="List the built-in engines: reference, seed, and mutant:* (known-bad variants).")
def engines() -> None:
    for name, description in engine_names():
        click.echo(f"{name:28} {description}")
