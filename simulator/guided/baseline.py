"""The baseline: what "no earlier run reached" is measured against.

A baseline is a `coverage.json` as `--coverage` writes it (`paysim suite scenarios/ci --coverage`
writes one into its `--out` folder; so does a guided search), given as the file or as the folder
holding it. That file lists what was *not* reached, so what was reached is the engine's every
branch and line (`points.EngineShape`, from the source as it is now) less those. That only holds
for the source the baseline measured: a file whose branch or line count differs, or whose figures
do not add up, is refused (`BaselineError`, one line naming the file) rather than compared
line-number by line-number with code that has moved.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simulator.engine_coverage import REPORT_FILE
from simulator.guided.points import Branch, EngineShape, Line, Points

#: a suite's coverage.json is tens of KB; refuse to parse anything absurd
MAX_BASELINE_BYTES = 64 * 1024 * 1024


class BaselineError(Exception):
    """A baseline that cannot be used; `str()` is one line naming the file."""


@dataclass(frozen=True)
class Baseline:
    """Points reached by earlier runs, and where they were read from."""

    points: Points
    sources: tuple[str, ...]
    #: engine files no baseline file measured (their points count as reached nowhere)
    unmeasured: tuple[str, ...] = ()


def load_baselines(paths: Sequence[Path], shape: EngineShape) -> Baseline:
    """The union of every baseline given (none: nothing reached before)."""
    points = Points()
    sources: list[str] = []
    measured: set[str] = set()
    for path in paths:
        file = path / REPORT_FILE if path.is_dir() else path
        found, names = read_baseline(file, shape, label=str(path))
        points |= found
        measured |= names
        sources.append(str(file))
    unmeasured = tuple(n for n in shape.names.values() if paths and n not in measured)
    return Baseline(points, tuple(sources), unmeasured)


def read_baseline(file: Path, shape: EngineShape, label: str) -> tuple[Points, set[str]]:
    """(points reached, engine files it measured) of one coverage.json."""
    report = _read_json(file, label)
    entries = report.get("files")
    if not isinstance(entries, dict):
        raise BaselineError(f"--baseline {label}: not a paysim coverage.json (no `files` table)")
    branches: set[Branch] = set()
    lines: set[Line] = set()
    measured: set[str] = set()
    for name in shape.names.values():
        key = _matching_key(entries, name)
        if key is None:
            continue
        entry = entries[key]
        b, ls = _reached_in(entry, name, shape, f"--baseline {label}: {key}")
        branches |= b
        lines |= ls
        measured.add(name)
    if not measured:
        theirs = ", ".join(str(m) for m in report.get("modules") or sorted(entries)) or "nothing"
        ours = ", ".join(shape.code.modules)
        raise BaselineError(
            f"--baseline {label}: measured {theirs}, none of the engine's modules ({ours}); "
            "measure it with the same --engine"
        )
    return Points(frozenset(branches), frozenset(lines)), measured


def _read_json(file: Path, label: str) -> Mapping[str, Any]:
    try:
        with file.open("rb") as fh:
            raw = fh.read(MAX_BASELINE_BYTES + 1)
    except FileNotFoundError:
        where = f" (no {REPORT_FILE} in the folder)" if file.name == REPORT_FILE else ""
        raise BaselineError(
            f"--baseline {label}: no such file{where}; write one with "
            "`paysim suite DIR --coverage --out FOLDER`"
        ) from None
    except OSError as exc:
        raise BaselineError(
            f"--baseline {label}: cannot read {file}: {exc.strerror or exc}"
        ) from None
    if len(raw) > MAX_BASELINE_BYTES:
        raise BaselineError(f"--baseline {label}: larger than {MAX_BASELINE_BYTES:,} bytes")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise BaselineError(
            f"--baseline {label}: not JSON ({' '.join(str(exc).split())})"
        ) from None
    if not isinstance(data, dict):
        raise BaselineError(f"--baseline {label}: not a paysim coverage.json (not a JSON object)")
    return data


def _matching_key(entries: Mapping[str, Any], name: str) -> str | None:
    """The entry for engine file `name`: the same relative name, or an absolute path (written
    from another folder) ending in it."""
    if name in entries:
        return name
    for key in sorted(entries):
        if Path(key).is_absolute() and Path(key).as_posix().endswith("/" + name):
            return key
    return None


def _reached_in(
    entry: Any, name: str, shape: EngineShape, where: str
) -> tuple[set[Branch], set[Line]]:
    if not isinstance(entry, dict):
        raise BaselineError(f"{where}: expected a table of figures")
    try:
        counts = {k: int(entry[k]) for k in ("branches", "branches_reached", "statements")}
        missing_lines = {int(u["line"]) for u in entry["unreached_lines"]}
        missing_branches = {(int(u["from"]), int(u["to"])) for u in entry["unreached_branches"]}
    except (KeyError, TypeError, ValueError) as exc:
        raise BaselineError(f"{where}: not a paysim coverage.json entry ({exc!r})") from None
    every_b = {(a, b) for n, a, b in shape.every.branches if n == name}
    every_l = {n for f, n in shape.every.lines if f == name}
    if counts["branches"] != len(every_b) or counts["statements"] != len(every_l):
        raise BaselineError(
            f"{where}: measured {counts['branches']} branches and {counts['statements']} lines, "
            f"the source has {len(every_b)} and {len(every_l)} now: another version of the "
            "engine; measure the baseline again"
        )
    reached_b = {(a, b) for a, b in every_b if a not in missing_lines} - missing_branches
    if len(reached_b) != counts["branches_reached"] or not missing_lines <= every_l:
        raise BaselineError(
            f"{where}: its figures do not add up for the source as it is now "
            f"({counts['branches_reached']} branches reached, {len(reached_b)} by its lists); "
            "measure the baseline again"
        )
    return {(name, a, b) for a, b in reached_b}, {(name, n) for n in every_l - missing_lines}
