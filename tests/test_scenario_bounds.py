"""Every scenario number has an upper bound, every file a size limit: a hostile or mistyped file
is refused in one line naming the key, instead of running for ever or exhausting memory."""

from __future__ import annotations

import typing
from pathlib import Path

import pytest
from click.testing import CliRunner

from simulator.cli import main
from simulator.scenario import Scenario
from simulator.scenario_file import (
    MAX_SCENARIO_BYTES,
    ScenarioError,
    is_table,
    load_scenario,
    schema_fields,
    tuple_items,
    unwrap_optional,
)

WORKLOAD = '[[workload]]\nkind = "herd"\ncount = 1\n'


def numeric_keys(cls: type, prefix: str = "") -> list[tuple[str, dict[str, typing.Any]]]:
    """(dotted key, metadata) of every number in the schema, tables and arrays included."""
    found = []
    for f in schema_fields(cls):
        hint, _ = unwrap_optional(f.hint)
        items = tuple_items(hint)
        inner = items[0] if items else hint
        key = f"{prefix}{f.name}"
        if is_table(inner):
            found += numeric_keys(inner, key + ".")
        elif inner in (int, float):
            found.append((key, dict(f.meta)))
    return found


def test_every_numeric_key_has_a_documented_upper_bound() -> None:
    keys = numeric_keys(Scenario)
    assert len(keys) > 40
    unbounded = [key for key, meta in keys if meta.get("max") is None]
    assert unbounded == []


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ('name = "x"\n[durations]\nworkload_s = 1e9\n', "durations.workload_s: expected a number"),
        (
            'name = "x"\n[customers]\nthink_time_s = [1e300, 1e300]\n',
            "customers.think_time_s[0]: expected a number",
        ),
        (
            'name = "x"\n[topology]\nredis_url = "../../etc/passwd"\n',
            "topology.redis_url: expected a URL starting redis://, rediss://, unix://",
        ),
        ("", "empty scenario file"),
        ("# only a comment\n", "empty scenario file"),
        ("seeds = " + "[" * 50_000 + "]" * 50_000 + "\n", "nested too deeply"),
        ('name = "' + "x" * 10_001 + '"\n', "name: expected at most 10,000 characters"),
        ("seeds = [" + ", ".join(["1"] * 10_001) + "]\n", "seeds: expected at most 10,000 items"),
        ('name = "x"\n' + "#" * MAX_SCENARIO_BYTES + "\n", "larger than the 1,048,576-byte"),
    ],
    ids=[
        "workload_s",
        "think_time",
        "redis_url",
        "empty",
        "comment-only",
        "deep-nesting",
        "long-string",
        "long-list",
        "huge-file",
    ],
)
def test_out_of_bounds_files_are_refused_naming_the_key(
    tmp_path: Path, text: str, named: str
) -> None:
    path = tmp_path / "s.toml"
    path.write_text(text)
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(str(path)) and named in message, message


def test_a_redis_url_with_a_known_scheme_and_an_endless_fault_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(
        'name = "x"\n[topology]\nredis_url = "unix:///tmp/redis.sock"\n'
        '[[faults]]\nkind = "stripe_errors"\nend = inf\n' + WORKLOAD
    )
    scenario = load_scenario(path)
    assert scenario.topology.redis_url == "unix:///tmp/redis.sock"
    assert scenario.faults[0].end == float("inf")


def test_the_cli_refuses_a_bound_with_exit_2_and_one_line(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text('name = "x"\n[durations]\nworkload_s = 1e9\n')
    result = CliRunner().invoke(main, ["run", str(path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    [line] = result.stderr.splitlines()
    assert "durations.workload_s: expected a number between 0 and 2592000, got 1000000000.0" in line
    assert not (tmp_path / "out").exists()
