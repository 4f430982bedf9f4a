"""The scenario key reference, generated from the schema so that it cannot drift from the code.

`python -m simulator.scenario_docs > scenarios/README.md` rewrites the committed README; a test
fails when the two differ.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import MISSING
from typing import Any

from simulator.scenario import MAX_ITEMS, MAX_STRING_CHARS, Scenario
from simulator.scenario_file import (
    MAX_SCENARIO_BYTES,
    FieldInfo,
    expected,
    is_table,
    is_table_array,
    number,
    schema_fields,
    toml_value,
    tuple_items,
    unwrap_optional,
)

INTRO = """\
# scenarios/

Scenario files are TOML; each one is a workload, a fault schedule, a topology and lock-wait
thresholds, and states only what differs from the defaults below. Three suites live here:

- `ci/` — the CI suite: short runs that gate the build (`paysim suite scenarios/ci --junit ...`).
  Each must pass against the reference engine; `expect_fail = ["seed"]` marks those the seed's
  design fails (the suite index shows those failures in grey, not red). The seed fails every
  CI scenario (of the first 14 it passes 1 of 40 runs, `crash-mid-handler` seed 2), and not
  only the one each scenario is about: two purchases at the same moment compute the same order number and the
  unique index refuses one, so most herds and double clicks also leak a seat and leave a
  session no purchase references (docs/seed-design.md).
- `load/` — longer runs for lock-wait measurements (`paysim run`, `paysim load`); their
  thresholds are the SLOs the report marks met or missed.
- `findings/` — one minimal reproduction per bug of the seed's code, each citing the upstream
  lines that cause it, naming the invariants it violates, with the seed (`seeds`) that shows it;
  `paysim suite scenarios/findings --engine seed` fails every one and `--engine reference`
  passes every one, lock-wait thresholds included.

A file is validated as it loads: an unknown key, a wrong type or an out-of-range value stops the
run with one line naming the file and the key (exit code 2). Times are virtual seconds unless a
key says otherwise. `[[name]]` is an array of tables: repeat it once per entry. Every number
has an upper bound (below); a file is at most {max_bytes:,} bytes, a string at most
{max_chars:,} characters, a list at most {max_items:,} items, and an empty file is refused.

This reference is generated from `simulator/scenario.py`
(`python -m simulator.scenario_docs > scenarios/README.md`); do not edit it by hand.
"""


def render_reference() -> str:
    """Every key with its type, default, range and meaning, one Markdown table per TOML table."""
    sections: list[str] = []
    _section(sections, Scenario, Scenario(), "", "Top level", "")
    return "\n".join(sections)


def render_readme() -> str:
    intro = INTRO.format(
        max_bytes=MAX_SCENARIO_BYTES, max_chars=MAX_STRING_CHARS, max_items=MAX_ITEMS
    )
    return intro + "\n## Key reference\n\n" + render_reference()


def _section(out: list[str], cls: type, defaults: Any, key: str, title: str, intro: str) -> None:
    fields = schema_fields(cls, defaults)
    rows = fields
    out.append(f"### {title}\n")
    if intro:
        out.append(f"{intro}\n")
    if rows:
        out.append("| key | type | default | meaning |")
        out.append("| --- | --- | --- | --- |")
        out += [_row(f, _join(key, f.name)) for f in rows]
        out.append("")
    for f in rows:
        choices = f.meta.get("choices")
        if isinstance(choices, Mapping):
            out.append(f"`{_join(key, f.name)}` values:\n")
            out += [f"- `{name}`: {_cell(meaning)}" for name, meaning in choices.items()]
            out.append("")
    for f in fields:
        inner, _ = unwrap_optional(f.hint)
        sub = _join(key, f.name)
        if is_table(inner):
            base = f.default if f.default not in (MISSING, None) else None
            _section(out, inner, base, sub, f"[{sub}]", _intro(inner, f))
        elif is_table_array(inner):
            item = tuple_items(inner)
            assert item is not None
            _section(out, item[0], None, sub, f"[[{sub}]]", _intro(item[0], f))


def _intro(cls: type, f: FieldInfo) -> str:
    """The class's own summary; for a class from outside the scenario model, the field's help."""
    if cls.__module__ == Scenario.__module__ and cls.__doc__:
        return cls.__doc__.strip().splitlines()[0]
    help_text = str(f.meta.get("help", ""))
    return help_text[:1].upper() + help_text[1:] + "." if help_text else ""


def _row(f: FieldInfo, key: str) -> str:
    kind = expected(f.hint, {k: v for k, v in f.meta.items() if k != "choices"})
    kind = kind.removeprefix("a ").removeprefix("an ")
    inner, _ = unwrap_optional(f.hint)
    if is_table(inner):
        kind = f"table `[{key}]`"
    elif is_table_array(inner):
        kind = f"array of tables `[[{key}]]`"
    if "choices" in f.meta:
        kind = "list of strings" if tuple_items(f.hint) else "string, one of the values below"
    if f.meta.get("ordered"):
        kind += ", ascending"
    if f.meta.get("infinite_ok"):
        kind += " or `inf`"
    _, optional = unwrap_optional(f.hint)
    if optional:
        kind += "; omit for none"
    return (
        f"| `{f.name}` | {_cell(kind)} | {_default(f.default)} | {_cell(f.meta.get('help', ''))} |"
    )


def _default(value: Any) -> str:
    if value is MISSING:
        return "required"
    if value is None:
        return "none"
    if is_table(type(value)):
        return "see below"
    if isinstance(value, tuple) and value and is_table(type(value[0])):
        return (
            f"{len(value)} entry with the defaults below"
            if len(value) == 1
            else f"{len(value)} entries"
        )
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"`{number(value)}`"
    return f"`{_cell(toml_value(value))}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def main() -> None:
    sys.stdout.write(render_readme())


if __name__ == "__main__":
    main()
