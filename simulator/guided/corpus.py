"""The corpus folder: one replayable scenario file per example that reached new engine code.

Each file is an ordinary scenario file (`paysim run FILE` replays it: its `seeds` holds the run
seed, so the seed is also in the name, `0007-seed-4242.toml`), and `manifest.json` says, per file,
which branches and lines it reached first, where it came from and the command that replays it
with coverage. A corpus is reused with `--corpus DIR`, as a fuzzer's corpus folder is: every
`*.toml` in it (a scenario dropped in by hand too) is replayed before the search and extended by
it; the manifest keeps what earlier searches wrote of their files. Nothing in a file or in the
manifest depends on the clock, so the same search writes the same bytes.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from simulator.scenario import Scenario
from simulator.scenario_file import ScenarioError, load_scenario, scenario_to_toml

if TYPE_CHECKING:
    from simulator.guided.points import EngineShape, Points
    from simulator.guided.search import Example

MANIFEST = "manifest.json"
FORMAT = 1
#: new branches named in a corpus file's description (the manifest lists all)
DESCRIBED = 5
_NUMBERED = re.compile(r"^(\d{4,})-")


class CorpusError(Exception):
    """A corpus folder that cannot be used; `str()` is one line naming the file."""


@dataclass(frozen=True)
class CorpusFile:
    """A scenario file of an existing corpus, with its run seeds."""

    name: str
    scenario: Scenario
    seeds: tuple[int, ...]


def read_corpus(folder: Path) -> list[CorpusFile]:
    """Every scenario file in `folder` by name (none if it does not exist); the manifest, when
    there is one, must be one this module wrote."""
    if not folder.exists():
        return []
    if not folder.is_dir():
        raise CorpusError(f"--corpus {folder}: exists and is not a folder")
    try:
        names = sorted(p.name for p in folder.iterdir() if p.suffix == ".toml" and p.is_file())
    except OSError as exc:
        raise CorpusError(f"--corpus {folder}: cannot read it: {exc.strerror or exc}") from None
    read_manifest(folder)
    files = []
    for name in names:
        try:
            scenario = load_scenario(folder / name)
        except ScenarioError as exc:
            raise CorpusError(f"--corpus: {exc}") from None
        if scenario.topology.locks == "redis":
            raise CorpusError(
                f'--corpus: {folder / name}: topology.locks = "redis" runs in wall-clock time; '
                "the guided search runs in virtual time only"
            )
        files.append(CorpusFile(name, scenario, scenario.seeds))
    return files


def read_manifest(folder: Path) -> list[dict[str, Any]]:
    path = folder / MANIFEST
    if not path.exists():
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CorpusError(f"--corpus: {path}: unreadable ({' '.join(str(exc).split())})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CorpusError(f"--corpus: {path}: not a paysim corpus manifest (format {FORMAT})")
    entries = data.get("entries")
    if not isinstance(entries, list) or not all(
        isinstance(e, dict) and isinstance(e.get("file"), str) for e in entries
    ):
        raise CorpusError(f"--corpus: {path}: `entries` must be a list of tables with a `file`")
    return entries


class CorpusWriter:
    """Adds files to a corpus folder as the search finds them, and keeps the manifest."""

    def __init__(self, folder: Path, engine: str, search_seed: int) -> None:
        self.folder, self.engine, self.search_seed = folder, engine, search_seed
        present = {p.name for p in folder.glob("*.toml")} if folder.is_dir() else set()
        # earlier searches' records of files still there; files without one were added by hand
        self.entries = [e for e in read_manifest(folder) if e["file"] in present] if present else []
        numbers = [int(m.group(1)) for name in present if (m := _NUMBERED.match(name))]
        self.next_number = max(numbers, default=0) + 1

    def add(self, example: Example, shape: EngineShape) -> str:
        """Write the example as `NNNN-seed-S.toml`; returns the file name."""
        number, self.next_number = self.next_number, self.next_number + 1
        stem = f"{number:04d}-seed-{example.seed}"
        name = f"{stem}.toml"
        scenario = replace(
            example.scenario,
            name=f"guided-{number:04d}",
            description=_description(example, self.engine, self.search_seed),
            seeds=(example.seed,),
            expect=(),
            expect_fail=(),
        )
        self.folder.mkdir(parents=True, exist_ok=True)
        _write_atomically(self.folder / name, scenario_to_toml(scenario))
        self.entries.append(
            {
                "file": name,
                "seed": example.seed,
                "engine": self.engine,
                "search_seed": self.search_seed,
                "example": example.number,
                "origin": example.origin,
                "new_branches": branch_rows(example.new, shape),
                "new_lines": line_rows(example.new, shape),
                "violated": example.violated,
                # what the run reached in all: its replay reaches the same
                "branches_reached": len(example.points.branches) if example.points else 0,
                "lines_reached": len(example.points.lines) if example.points else 0,
                # from the corpus folder: nothing here names where the folder is (it moves)
                "replay": f"paysim run {name} --engine {self.engine} --coverage",
            }
        )
        return name

    def files_on_disk(self) -> int:
        return sum(1 for _ in self.folder.glob("*.toml")) if self.folder.is_dir() else 0

    def write_manifest(self) -> Path:
        path = self.folder / MANIFEST
        self.folder.mkdir(parents=True, exist_ok=True)
        data = {
            "format": FORMAT,
            "about": "paysim explore --guided: per scenario file, what it reached first; "
            "replay commands run in this folder",
            "entries": self.entries,
        }
        _write_atomically(path, json.dumps(data, indent=1, sort_keys=True) + "\n")
        return path


def branch_rows(points: Points, shape: EngineShape) -> list[dict[str, Any]]:
    """Branches as the manifest and the report list them: file, from, to and their source."""
    return [
        {
            "file": f,
            "from": a,
            "to": b,
            "source": shape.source(f, a),
            "target": "exit" if b < 0 else shape.source(f, b),
        }
        for f, a, b in sorted(points.branches)
    ]


def line_rows(points: Points, shape: EngineShape) -> list[dict[str, Any]]:
    return [{"file": f, "line": n, "source": shape.source(f, n)} for f, n in sorted(points.lines)]


def _description(example: Example, engine: str, search_seed: int) -> str:
    branches = sorted(example.new.branches)
    named = ", ".join(
        f"{Path(f).name}:{a}→{'exit' if b < 0 else b}" for f, a, b in branches[:DESCRIBED]
    )
    more = f" and {len(branches) - DESCRIBED} more" if len(branches) > DESCRIBED else ""
    what = f"{len(branches)} new branches ({named}{more})" if branches else "no new branch"
    lines = len(example.new.lines)
    return (
        f"Kept by paysim explore --guided (engine {engine}, search seed {search_seed}, example "
        f"{example.number}): reached {what} and {lines} new lines. Came from: {example.origin}"
    )


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
