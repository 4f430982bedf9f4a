"""Which lines and branches of the engine's own code a run, a suite or a search reached.

coverage.py in branch mode, measured on the engine's module(s) only, never the harness: the
modules of the engine class and of its base classes (a mutant is measured on its own module and
on the reference's), plus the reference's helper modules that are engine logic (`ENGINE_HELPERS`).

Each measured run writes one data file (`.coverage.<host>.<pid>.<random>`) into a folder: runs in
worker processes, or one after another, all add files, and `combine` merges them. A cluster's
worker shares no folder with the client and may hold the checkout at another path: it measures
into a folder of its own and sends the arcs back keyed by module name (`portable_arcs`), which
the client writes as a data file of its own files (`land_arcs`). Lines that run when the module is imported (`def`, class
bodies) run before any measurement starts in a process that has already imported the engine, so
`combine` adds one measurement of a bare import, taken in a fresh interpreter.
"""

from __future__ import annotations

import importlib
import inspect
import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import coverage

from reference_impl.ports import EngineFactory
from simulator.engine_class import engine_class

DATA_PREFIX = ".coverage"
REPORT_FILE = "coverage.json"
#: modules an engine's class uses that are engine logic too (not ports, stores or lock services)
ENGINE_HELPERS: dict[str, tuple[str, ...]] = {
    "reference_impl.reference_engine": ("reference_impl.seats",),
}


@dataclass(frozen=True)
class EngineCode:
    """The engine's modules, by import name and by file."""

    modules: tuple[str, ...]
    files: tuple[str, ...]


def engine_code(factory: EngineFactory) -> EngineCode:
    """The modules of the engine class (a class factory, or the class a factory function
    returns) and its bases, with their helper modules; library and builtin classes left out."""
    cls = engine_class(factory)
    modules: list[str] = []
    for klass in inspect.getmro(cls):
        name = klass.__module__
        if name == "builtins" or name in modules:
            continue
        modules.append(name)
        modules += [h for h in ENGINE_HELPERS.get(name, ()) if h not in modules]
    files = []
    for name in modules:
        module = sys.modules.get(name) or importlib.import_module(name)
        path = getattr(module, "__file__", None)
        if path and "site-packages" not in path:
            files.append(str(Path(path).resolve()))
    return EngineCode(tuple(modules), tuple(files))


def _coverage(data_dir: Path, code: EngineCode) -> coverage.Coverage:
    return coverage.Coverage(
        data_file=str(data_dir / DATA_PREFIX),
        data_suffix=True,
        branch=True,
        include=list(code.files),
        config_file=False,
    )


@contextmanager
def measuring(data_dir: Path | None, code: EngineCode | None) -> Iterator[None]:
    """Measure the engine's code while the block runs; a data file of its own in `data_dir`."""
    if data_dir is None or code is None:
        yield
        return
    data_dir.mkdir(parents=True, exist_ok=True)
    cov = _coverage(data_dir, code)
    cov.start()
    try:
        yield
    finally:
        cov.stop()
        cov.save()


_IMPORT_PROBE = """
import coverage, importlib, sys
data, include, modules = sys.argv[1], sys.argv[2].split("\\n"), sys.argv[3].split("\\n")
cov = coverage.Coverage(data_file=data, data_suffix=True, branch=True, include=include,
                        config_file=False)
cov.start()
for name in modules:
    importlib.import_module(name)
cov.stop()
cov.save()
"""


def measure_import(data_dir: Path, code: EngineCode) -> None:
    """The lines a bare import runs (`def`, decorators, class bodies), in a fresh interpreter."""
    data_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            sys.executable,
            "-c",
            _IMPORT_PROBE,
            str(data_dir / DATA_PREFIX),
            "\n".join(code.files),
            "\n".join(code.modules),
        ],
        check=True,
        capture_output=True,
        cwd=str(Path.cwd()),
    )


def combine(data_dir: Path, code: EngineCode, out_file: Path) -> dict[str, Any]:
    """Merge every data file in `data_dir` (plus one bare import) into `out_file` (JSON)."""
    measure_import(data_dir, code)
    cov = _coverage(data_dir, code)
    cov.combine([str(data_dir)], keep=True)
    report = figures(cov, code)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    out_file.write_text(json.dumps(report, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return report


def figures(cov: coverage.Coverage, code: EngineCode) -> dict[str, Any]:
    """Per file: branches reached of all, every line and branch never reached, with its source."""
    tmp = Path(cov.get_data().data_filename()).with_name("raw-coverage.json")
    cov.json_report(outfile=str(tmp), show_contexts=False)
    raw = json.loads(tmp.read_text(encoding="utf-8"))
    tmp.unlink()
    files: dict[str, Any] = {}
    branches = covered = statements = executed = 0
    root = Path.cwd().resolve()
    for path in code.files:
        entry = raw["files"].get(_relative(path, root)) or raw["files"].get(path)
        if entry is None:  # never imported: nothing of it ran
            continue
        source = Path(path).read_text(encoding="utf-8").splitlines()
        summary = entry["summary"]
        missing_lines = entry["missing_lines"]
        missing_branches = [
            (a, b) for a, b in entry["missing_branches"] if a not in set(missing_lines)
        ]
        # branches counted from the lists, as the guided search's points are (coverage.py's
        # summary would also count the arcs of a `pragma: no branch` line, which the lists leave
        # out: the engines have none, and a test keeps the two figures equal)
        reached = len(entry["executed_branches"])
        files[_relative(path, root)] = {
            "branches": reached + len(entry["missing_branches"]),
            "branches_reached": reached,
            "statements": summary["num_statements"],
            "statements_reached": summary["covered_lines"],
            "unreached_lines": [{"line": n, "source": _line(source, n)} for n in missing_lines],
            "unreached_branches": [
                {
                    "from": a,
                    "to": b,
                    "source": _line(source, a),
                    "target": "exit" if b < 0 else _line(source, b),
                }
                for a, b in missing_branches
            ],
        }
        branches += files[_relative(path, root)]["branches"]
        covered += reached
        statements += summary["num_statements"]
        executed += summary["covered_lines"]
    return {
        "modules": list(code.modules),
        "branches": branches,
        "branches_reached": covered,
        "branch_percent": round(100.0 * covered / branches, 2) if branches else 100.0,
        "statements": statements,
        "statements_reached": executed,
        "files": files,
    }


def _relative(path: str, root: Path) -> str:
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return path


def _line(source: list[str], n: int) -> str:
    return source[n - 1].strip() if 0 < n <= len(source) else ""


def reached_arcs(data_dir: Path) -> set[tuple[str, int, int]]:
    """Every (file, from, to) arc the data files in `data_dir` hold (guided search's signal)."""
    combined = coverage.CoverageData(no_disk=True)
    for path in sorted(data_dir.glob(DATA_PREFIX + ".*")):
        part = coverage.CoverageData(basename=str(path))
        part.read()
        combined.update(part)
    return {
        (f, a, b) for f in combined.measured_files() for a, b in combined.arcs(f) or () if a > 0
    }


#: arcs by engine module name: what a remote worker sends back (paths differ between machines)
PortableArcs = dict[str, list[tuple[int, int]]]


def portable_arcs(data_dir: Path) -> PortableArcs:
    """Worker side: every arc the data files in `data_dir` hold, keyed by module name."""
    by_file = {
        str(Path(module.__file__).resolve()): name
        for name, module in list(sys.modules.items())
        if getattr(module, "__file__", None)
    }
    out: PortableArcs = {}
    for path in sorted(data_dir.glob(DATA_PREFIX + ".*")):
        part = coverage.CoverageData(basename=str(path))
        part.read()
        for measured in part.measured_files():
            name = by_file.get(str(Path(measured).resolve()))
            if name is not None:
                out.setdefault(name, []).extend(part.arcs(measured) or ())
    return {name: sorted(set(arcs)) for name, arcs in out.items()}


def land_arcs(data_dir: Path, arcs: PortableArcs) -> None:
    """Client side: `arcs` (from `portable_arcs`) as one more data file in `data_dir`, under
    this machine's paths of the same modules."""
    if not arcs:
        return
    data_dir.mkdir(parents=True, exist_ok=True)
    local = {}
    for name, pairs in arcs.items():
        module = sys.modules.get(name) or importlib.import_module(name)
        local[str(Path(module.__file__ or name).resolve())] = pairs
    data = coverage.CoverageData(basename=str(data_dir / DATA_PREFIX), suffix=True)
    data.add_arcs(local)
    data.write()


def summary_line(report: dict[str, Any]) -> str:
    """`engine coverage: 212 of 220 branches (96.4 %), 5 lines never reached`."""
    lines = sum(len(f["unreached_lines"]) for f in report["files"].values())
    return (
        f"engine coverage: {report['branches_reached']} of {report['branches']} branches "
        f"({report['branch_percent']:.1f} %), {lines} lines never reached "
        f"({', '.join(report['modules'])})"
    )
