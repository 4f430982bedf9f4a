"""What a guided search reached, for people: the one-line summary and report.html.

The page leads with what the search adds to the baseline (each branch it reached first, with its
source, and the corpus file that reached it: replay that file to see the branch taken), then the
corpus, the failures with their replay commands, and the engine-coverage section every measured
run has (`report_coverage`), here for everything the search reached.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

from simulator.guided.corpus import branch_rows
from simulator.guided.points import EngineShape, Points
from simulator.guided.search import GuidedOutcome
from simulator.report_coverage import coverage_section
from simulator.report_html import _page

REPORT_FILE = "report.html"


@dataclass(frozen=True)
class Figures:
    """Branches and lines: the baseline's, with the search's, of all the engine has."""

    branches_before: int
    branches_after: int
    branches_total: int
    lines_before: int
    lines_after: int
    lines_total: int

    @property
    def new_branches(self) -> int:
        return self.branches_after - self.branches_before


def figures(outcome: GuidedOutcome, shape: EngineShape) -> Figures:
    after = outcome.baseline | outcome.reached
    return Figures(
        len(outcome.baseline.branches),
        len(after.branches),
        len(shape.every.branches),
        len(outcome.baseline.lines),
        len(after.lines),
        len(shape.every.lines),
    )


def summary_line(outcome: GuidedOutcome, f: Figures, corpus_files: int, new_files: int) -> str:
    """`guided: N examples in T s, reached B new branches beyond the baseline (X → Y of Z), K
    corpus files, F failures`."""
    files = f"{corpus_files} corpus files" + (
        f" ({new_files} new)" if corpus_files != new_files else ""
    )
    errors = f", {len(outcome.errors)} paysim errors" if outcome.errors else ""
    return (
        f"guided: {outcome.examples} examples in {outcome.elapsed_s:.1f} s, reached "
        f"{f.new_branches} new branches beyond the baseline ({f.branches_before} → "
        f"{f.branches_after} of {f.branches_total}), {files}, {len(outcome.failures)} failures"
        + errors
    )


def first_reached_by(outcome: GuidedOutcome) -> dict[tuple[str, int, int], str]:
    """Branch -> the corpus file that reached it first (kept examples' new points are disjoint)."""
    return {b: e.corpus_file or "" for e in outcome.kept for b in e.new.branches}


def write_report(
    out: Path,
    outcome: GuidedOutcome,
    shape: EngineShape,
    summary: Mapping[str, Any],
    coverage_file: Path,
) -> Path:
    f = figures(outcome, shape)
    beyond = Points(outcome.beyond.branches, frozenset())
    found_by = first_reached_by(outcome)
    body = [
        f"<h1>Guided search · {escape(str(summary['engine']))}</h1>",
        f"<p><b>{escape(str(summary['summary']))}</b></p>",
        f"<p>Search seed {summary['search_seed']}; stopped by its "
        f"{'time budget' if outcome.stopped_by == 'time' else 'example budget'}; "
        f"{outcome.replayed} corpus runs replayed first. Baseline: "
        + (", ".join(f"<code>{escape(s)}</code>" for s in summary["baseline"]["sources"]) or "none")
        + f". Lines: {f.lines_before} → {f.lines_after} of {f.lines_total}.</p>",
        _table(
            "Branches beyond the baseline",
            ["branch", "source → target", "first reached by"],
            [
                [
                    f"{escape(Path(r['file']).name)}:{r['from']} → "
                    f"{'exit' if r['to'] < 0 else r['to']}",
                    f"<code>{escape(r['source'])}</code> → <code>{escape(r['target'])}</code>",
                    escape(found_by.get((r["file"], r["from"], r["to"]), "")),
                ]
                for r in branch_rows(beyond, shape)
            ],
            empty="none: every branch the search reached, the baseline had reached",
        ),
        _table(
            "Corpus files written",
            ["file", "seed", "new branches", "new lines", "violated", "came from"],
            [
                [
                    escape(e.corpus_file or ""),
                    str(e.seed),
                    str(len(e.new.branches)),
                    str(len(e.new.lines)),
                    escape(", ".join(e.violated) or "-"),
                    escape(e.origin),
                ]
                for e in outcome.kept
            ],
            empty="none",
        ),
        _table(
            "Failures",
            ["invariant", "scenario file", "replay"],
            [
                [
                    escape(row["invariant"]),
                    escape(row["path"]),
                    f"<code>{escape(row['replay'])}</code>",
                ]
                for row in summary["failures"]
            ],
            empty="none: every invariant held on every example",
        ),
        _table(
            "paysim errors (paysim itself raised: a bug in the harness, not in the engine)",
            ["scenario file", "error"],
            [
                [escape(row["path"]), f"<code>{escape(row['error'])}</code>"]
                for row in summary["errors"]
            ],
            empty="",
        ),
        coverage_section(coverage_file),
    ]
    path = out / REPORT_FILE
    path.write_text(_page(f"guided search · {summary['engine']}", body), encoding="utf-8")
    return path


def _table(title: str, head: Sequence[str], rows: Sequence[Sequence[str]], empty: str) -> str:
    if not rows:
        return f"<h2>{escape(title)}</h2><p>{escape(empty)}</p>" if empty else ""
    cells = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    heads = "".join(f"<th>{escape(h)}</th>" for h in head)
    return f"<h2>{escape(title)}</h2><table><tr>{heads}</tr>{cells}</table>"
