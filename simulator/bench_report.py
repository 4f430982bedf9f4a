"""The benchmark's results: figures with their peer and target, written as bench.json and bench.md.

A figure alone says little ("236 purchases/s"); next to a peer measured in the same run on the
same machine (a plain anyio.Lock, redis-py's own lock, one worker instead of two) and a target,
it says whether the work is done. `met` is None when there is nothing to judge (skipped).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Figure:
    key: str
    label: str
    value: float | None
    unit: str
    peer_label: str = ""
    peer_value: float | None = None
    #: how `ratio` is formed, for the reader: e.g. "value / peer"
    ratio_label: str = ""
    ratio: float | None = None
    target: str = ""
    met: bool | None = None
    note: str = ""

    def cells(self) -> list[str]:
        return [
            self.label,
            _num(self.value, self.unit),
            f"{self.peer_label}: {_num(self.peer_value, self.unit)}" if self.peer_label else "",
            f"{_num(self.ratio)} ({self.ratio_label})" if self.ratio is not None else "",
            self.target,
            {True: "met", False: "missed", None: "n/a"}[self.met],
        ]


def judged(
    key: str,
    label: str,
    value: float | None,
    unit: str,
    *,
    target: str,
    ok: Callable[[float], bool],
    judged_on: str = "value",
    peer_label: str = "",
    peer_value: float | None = None,
    ratio_label: str = "",
    ratio: float | None = None,
    note: str = "",
) -> Figure:
    """A figure whose `met` is `ok(ratio)` (judged_on="ratio"), `ok(peer_value)` ("peer") or
    `ok(value)`."""
    subject = {"ratio": ratio, "peer": peer_value}.get(judged_on, value)
    return Figure(
        key,
        label,
        value,
        unit,
        peer_label,
        peer_value,
        ratio_label,
        ratio,
        target,
        None if subject is None else bool(ok(subject)),
        note,
    )


def machine() -> dict[str, Any]:
    """The host, and how busy it is: figures from a loaded machine read low."""
    return {
        "cpus": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "versions": {name: _version(name) for name in _PACKAGES},
    }


_PACKAGES = ("trio", "anyio", "stripe", "httpx", "mongomock", "redis", "hdrhistogram")


def _version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


@dataclass
class Report:
    figures: list[Figure] = field(default_factory=list)
    sections: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    #: taken when the run starts, so the load average is the one the figures ran under
    host: dict[str, Any] = field(default_factory=machine)

    def add(self, figure: Figure) -> Figure:
        self.figures.append(figure)
        return figure

    def write(self, out_dir: Path) -> tuple[Path, Path]:
        out_dir.mkdir(parents=True, exist_ok=True)
        data = {
            "machine": self.host,
            "wall_s": round(self.wall_s, 1),
            "figures": [asdict(f) for f in self.figures],
            "sections": self.sections,
            "notes": self.notes,
        }
        json_path, md_path = out_dir / "bench.json", out_dir / "bench.md"
        json_path.write_text(json.dumps(data, indent=1, default=str) + "\n")
        md_path.write_text(self.markdown(self.host))
        return json_path, md_path

    def markdown(self, host: dict[str, Any]) -> str:
        lines = [
            "# paysim benchmark",
            "",
            f"One run of `python -m simulator.bench` on {host['cpus']} CPUs "
            f"(load average {host['load_avg_1m']} at the start), Python {host['python']}, "
            f"in {self.wall_s:.0f} s.",
            "",
            "| figure | value | peer | ratio | target | |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        lines += ["| " + " | ".join(_md(c) for c in f.cells()) + " |" for f in self.figures]
        notes = [f"- {f.label}: {f.note}" for f in self.figures if f.note]
        if notes:
            lines += ["", "Notes on the figures:", "", *notes]
        profile = self.sections.get("profile")
        if profile:
            lines += [
                "",
                f"## Where the time goes ({profile['what']})",
                "",
                "| bucket | self s | self % |",
                "| --- | --- | --- |",
            ]
            lines += [
                f"| {b['bucket']} | {b['self_s']} | {b['self_pct']} |" for b in profile["buckets"]
            ]
            lines += [
                "",
                "Inclusive time of entry points (each alone; they overlap):",
                "",
                "| entry point | inclusive s |",
                "| --- | --- |",
            ]
            lines += [
                f"| {e['entry_point']} | {e['inclusive_s']} |" for e in profile["entry_points"]
            ]
            lines += [
                "",
                "Top functions by self time:",
                "",
                "| function | calls | self s | cumulative s |",
                "| --- | --- | --- | --- |",
            ]
            lines += [
                f"| `{t['function']}` | {t['calls']} | {t['self_s']} | {t['cumulative_s']} |"
                for t in profile["top"]
            ]
            lines += ["", profile["how"]]
        if self.notes:
            lines += ["", "## Notes", "", *(f"- {n}" for n in self.notes)]
        return "\n".join(lines) + "\n"


def _num(value: float | None, unit: str = "") -> str:
    if value is None:
        return "skipped"
    text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.3g}"
    return f"{text} {unit}".strip()


def _md(cell: str) -> str:
    return cell.replace("|", "\\|")
