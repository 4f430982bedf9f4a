"""index.html for a suite: a scenario × engine matrix, with the failures a scenario expects.

A scenario can declare (`expect_fail = ["seed"]`) that an engine is expected to fail it — the
seed's design has known bugs, and each CI scenario shows one. The index shows those failures in
a neutral colour, so a reader sees at a glance what is news: a failure nobody expected (red), or
an expected failure that did not happen (amber: the scenario no longer catches that engine). The
banner says whether every expectation held.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any

from simulator.report_coverage import coverage_section
from simulator.report_html import _badge, _page

#: a cell's state → (badge text, what it means); the CSS class is the state itself
CELL_STATES: Mapping[str, str] = {
    "pass": "every run passed, as expected",
    "fail": "a run failed that was expected to pass",
    "expected": "failed, as the scenario's `expect_fail` says it should",
    "surprise": "expected to fail, but every run passed: the scenario no longer catches it",
}


@dataclass
class Cell:
    """The runs of one scenario under one engine."""

    expected_fail: bool = False
    runs: list[Mapping[str, Any]] = field(default_factory=list)

    @property
    def failed(self) -> list[Mapping[str, Any]]:
        return [r for r in self.runs if not _passed(r)]

    @property
    def state(self) -> str:
        if self.expected_fail:
            return "expected" if self.failed else "surprise"
        return "fail" if self.failed else "pass"


def _passed(run: Mapping[str, Any]) -> bool:
    met = (run.get("thresholds") or {}).get("met", True)
    return run.get("verdict") == "pass" and bool(met)


def matrix(
    runs: Sequence[Mapping[str, Any]],
) -> tuple[list[str], list[str], dict[tuple[str, str], Cell]]:
    """(scenarios, engines, cells) in the order the runs first name them."""
    scenarios: list[str] = []
    engines: list[str] = []
    cells: dict[tuple[str, str], Cell] = {}
    for run in runs:
        scenario, engine = str(run.get("scenario", "?")), str(run.get("engine", "?"))
        scenarios += [] if scenario in scenarios else [scenario]
        engines += [] if engine in engines else [engine]
        cell = cells.setdefault((scenario, engine), Cell())
        cell.expected_fail = cell.expected_fail or bool(run.get("expected_fail"))
        cell.runs.append(run)
    return scenarios, engines, cells


def verdict_line(cells: Mapping[tuple[str, str], Cell]) -> tuple[str, str, str]:
    """(css class, headline, detail) of the banner: did every expectation hold?"""
    states = [c.state for c in cells.values()]
    runs = sum(len(c.runs) for c in cells.values())
    failed = sum(len(c.failed) for c in cells.values())
    detail = (
        f"{runs} runs, {failed} failed; {states.count('expected')} expected failures (grey), "
        f"{states.count('fail')} unexpected failures (red), {states.count('surprise')} expected "
        f"failures that did not happen (amber)"
    )
    if "fail" in states:
        return "fail", "FAIL: a scenario failed that was expected to pass", detail
    if "surprise" in states:
        return "unknown", "EXPECTATIONS NOT MET: an expected failure did not happen", detail
    return "pass", "PASS: every expectation held", detail


def write_index(out_dir: Path, runs: list[dict[str, Any]]) -> Path:
    """Write out_dir/index.html: the scenario × engine matrix, each cell linking its runs.

    Each run is its summary dict plus `run_dir` (or `report`, its report.html) and optionally
    `expected_fail` (the scenario lists this engine in `expect_fail`).
    """
    scenarios, engines, cells = matrix(runs)
    css, headline, detail = verdict_line(cells)
    head = "".join(f"<th>{escape(e)}</th>" for e in engines)
    rows = []
    for scenario in scenarios:
        tds = "".join(
            _cell(cells[(scenario, e)], out_dir) if (scenario, e) in cells else "<td>—</td>"
            for e in engines
        )
        rows.append(f"<tr><th>{escape(scenario)}</th>{tds}</tr>")
    legend = "".join(
        f"<li>{_badge(state)} {escape(text)}</li>" for state, text in CELL_STATES.items()
    )
    body = [
        "<h1>paysim suite</h1>",
        f'<div class="banner {css}">{escape(headline)}<small>{escape(detail)}</small></div>',
        f"<table class=matrix><tr><th>scenario</th>{head}</tr>",
        *rows,
        "</table>",
        f"<ul class=legend>{legend}</ul>",
        '<p class="meta">Each cell links the report of every seed run; a run fails when an '
        "invariant is violated, a checker cannot decide, the run is vacuous or a lock-wait SLO "
        "is missed.</p>",
        coverage_section(out_dir / "coverage.json"),
    ]
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / "index.html"
    out.write_text(_page("paysim suite", body), encoding="utf-8")
    return out


def _cell(cell: Cell, out_dir: Path) -> str:
    failed = cell.failed
    count = f"{len(failed)}/{len(cell.runs)} failed" if failed else f"{len(cell.runs)} passed"
    broke = sorted({str(v.get("invariant")) for r in failed for v in r.get("violations") or []})
    broke += sorted({_other_reason(r) for r in failed if not r.get("violations")})
    why = f"<br><small>{escape(', '.join(broke))}</small>" if broke else ""
    links = " ".join(
        f'<a class="{"ok" if _passed(r) else "bad"}" href="{escape(_href(r, out_dir))}">'
        f"seed {escape(str(r.get('seed', '?')))}</a>"
        for r in cell.runs
    )
    return f'<td class="{cell.state}">{_badge(cell.state)} {count}{why}<br>{links}</td>'


def _other_reason(run: Mapping[str, Any]) -> str:
    """Why a run without a violated invariant failed."""
    if run.get("vacuous"):
        return "vacuous"
    if run.get("verdict") == "pass":
        return "lock-wait SLO missed"
    return str(run.get("verdict", "?"))


def _href(run: Mapping[str, Any], out_dir: Path) -> str:
    report = Path(run["report"]) if "report" in run else Path(run["run_dir"]) / "report.html"
    href = os.path.relpath(report, out_dir) if report.is_absolute() else str(report)
    return href.replace(os.sep, "/")
