"""Coverage points: which branches and lines of the engine's own code a run reached.

The unit is coverage.py's own, so that the guided search's figures are the figures of
`coverage.json` (`simulator.engine_coverage`): a *branch* is an arc out of a line with two or more
exits, a *line* is a statement, and both are named by the file as `coverage.json` names it
(relative to the current folder). A run records raw arcs; they become points through coverage.py's
own report of a data file holding them (multi-line statements map onto their first line there,
excluded lines drop out), never through a second reading of the source here.
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import coverage
from coverage.exceptions import NoDataError

from simulator.engine_coverage import DATA_PREFIX, EngineCode, measure_import

Branch = tuple[str, int, int]  # (file, from line, to line; negative: the function exits)
Line = tuple[str, int]  # (file, line)
#: a run's raw arcs, per engine module (module names travel between machines; paths may not)
Arcs = Mapping[str, frozenset[tuple[int, int]]]


@dataclass(frozen=True)
class Points:
    """A set of branches and lines; `|`, `-` and `<=` as for sets."""

    branches: frozenset[Branch] = frozenset()
    lines: frozenset[Line] = frozenset()

    def __or__(self, other: Points) -> Points:
        return Points(self.branches | other.branches, self.lines | other.lines)

    def __sub__(self, other: Points) -> Points:
        return Points(self.branches - other.branches, self.lines - other.lines)

    def __le__(self, other: Points) -> bool:
        return self.branches <= other.branches and self.lines <= other.lines

    def __bool__(self) -> bool:
        return bool(self.branches or self.lines)

    def in_files(self, names: Iterable[str]) -> Points:
        keep = set(names)
        return Points(
            frozenset(b for b in self.branches if b[0] in keep),
            frozenset(line for line in self.lines if line[0] in keep),
        )


@dataclass(frozen=True)
class EngineShape:
    """Every branch and line the engine's modules have (what 100 % would be), by file name,
    with the points a bare import reaches (`def` lines: reached before any run measures)."""

    code: EngineCode
    files: Mapping[str, str]  # module -> absolute path of its file
    names: Mapping[str, str]  # module -> file name as coverage.json has it
    every: Points
    at_import: Points
    sources: Mapping[str, tuple[str, ...]] = field(repr=False)

    def source(self, name: str, line: int) -> str:
        text = self.sources.get(name, ())
        return text[line - 1].strip() if 0 < line <= len(text) else ""

    def branches_in(self, name: str) -> int:
        return sum(1 for b in self.every.branches if b[0] == name)

    def lines_in(self, name: str) -> int:
        return sum(1 for line in self.every.lines if line[0] == name)


def module_files(code: EngineCode) -> dict[str, str]:
    """module -> absolute file, for the engine modules that have a file of their own."""
    measured = set(code.files)
    out = {}
    for name in code.modules:
        module = sys.modules.get(name)
        path = getattr(module, "__file__", None) if module is not None else None
        if path and str(Path(path).resolve()) in measured:
            out[name] = str(Path(path).resolve())
    return out


def display_name(path: str) -> str:
    """The file as coverage.json names it: relative to the current folder when under it."""
    try:
        return str(Path(path).relative_to(Path.cwd().resolve()))
    except ValueError:
        return path


def engine_shape(code: EngineCode) -> EngineShape:
    """Measured on a bare import in a fresh interpreter (`engine_coverage.measure_import`)."""
    files = module_files(code)
    names = {m: display_name(f) for m, f in files.items()}
    with tempfile.TemporaryDirectory(prefix="paysim-shape-") as tmp:
        measure_import(Path(tmp), code)
        report = _json_report(Path(tmp), list(files.values()))
    every_b: set[Branch] = set()
    every_l: set[Line] = set()
    seen_b: set[Branch] = set()
    seen_l: set[Line] = set()
    sources = {}
    for module, path in files.items():
        name = names[module]
        entry = _entry(report, path)
        if entry is None:
            continue
        every_l |= {(name, n) for n in (*entry["executed_lines"], *entry["missing_lines"])}
        seen_l |= {(name, n) for n in entry["executed_lines"]}
        every_b |= {
            (name, a, b) for a, b in (*entry["executed_branches"], *entry["missing_branches"])
        }
        seen_b |= {(name, a, b) for a, b in entry["executed_branches"]}
        sources[name] = tuple(Path(path).read_text(encoding="utf-8").splitlines())
    return EngineShape(
        code,
        files,
        names,
        Points(frozenset(every_b), frozenset(every_l)),
        Points(frozenset(seen_b), frozenset(seen_l)),
        sources,
    )


def points_of(arcs: Arcs, shape: EngineShape) -> Points:
    """The branches and lines these raw arcs reach, as coverage.py reports them."""
    by_file = {shape.files[m]: sorted(a) for m, a in arcs.items() if m in shape.files and a}
    if not by_file:
        return Points()
    with tempfile.TemporaryDirectory(prefix="paysim-points-") as tmp:
        write_arcs(Path(tmp), by_file)
        report = _json_report(Path(tmp), list(shape.files.values()))
    branches: set[Branch] = set()
    lines: set[Line] = set()
    for module, path in shape.files.items():
        entry = _entry(report, path)
        if entry is None:
            continue
        name = shape.names[module]
        lines |= {(name, n) for n in entry["executed_lines"]}
        branches |= {(name, a, b) for a, b in entry["executed_branches"]}
    return Points(frozenset(branches), frozenset(lines))


def write_arcs(data_dir: Path, arcs_by_file: Mapping[str, Iterable[tuple[int, int]]]) -> Path:
    """One coverage data file in `data_dir` holding these arcs (absolute paths), combinable with
    the files a measured run writes (`engine_coverage.combine`)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / f"{DATA_PREFIX}.guided"
    data = coverage.CoverageData(basename=str(path))
    data.add_arcs({f: list(a) for f, a in arcs_by_file.items()})
    data.write()
    return path


def run_arcs(data_dir: Path, files: Mapping[str, str]) -> dict[str, frozenset[tuple[int, int]]]:
    """module -> every raw arc the data files in `data_dir` hold for that module's file."""
    by_path = {path: module for module, path in files.items()}
    out: dict[str, set[tuple[int, int]]] = {}
    for part_path in sorted(data_dir.glob(DATA_PREFIX + ".*")):
        part = coverage.CoverageData(basename=str(part_path))
        part.read()
        for measured in part.measured_files():
            module = by_path.get(str(Path(measured).resolve()))
            if module is not None:
                out.setdefault(module, set()).update(part.arcs(measured) or ())
    return {m: frozenset(a) for m, a in out.items()}


def _json_report(data_dir: Path, files: list[str]) -> dict[str, Any]:
    """coverage.py's JSON report of every data file in `data_dir` ({} when none holds data)."""
    cov = coverage.Coverage(
        data_file=str(data_dir / DATA_PREFIX),
        branch=True,
        include=files,
        config_file=False,
    )
    cov.combine([str(data_dir)], keep=True)
    out = data_dir / "report.json"
    try:
        cov.json_report(outfile=str(out), show_contexts=False)
    except NoDataError:
        return {}
    files_report: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))["files"]
    return files_report


def _entry(report: Mapping[str, Any], path: str) -> Mapping[str, Any] | None:
    return report.get(display_name(path)) or report.get(path)
