"""report.html for one run: a self-contained page for review (the suite index: suite_index.py).

Everything is inline (CSS, PNG charts as base64 data URIs), so a report can be attached to a CI
job or mailed and still open. A violation is shown with its evidence: the actual history lines
(read from history.jsonl by seq), so a reviewer can follow the bug without the run folder.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping
from html import escape
from pathlib import Path
from typing import Any

from simulator.charts import CHART_FILES, make_charts
from simulator.checkers import INVARIANTS
from simulator.report_coverage import coverage_section
from simulator.tested import tested_section

CHART_CAPTIONS = {
    "lock_wait_distribution.png": "How long lock requests waited, per key family. Log scale, so "
    "0 ms waits are counted in the legend; red bars are waits that ended in a timeout.",
    "lock_wait_over_time.png": "Lock wait p50 and p99 over virtual time. Shaded bands and the "
    "strip below are the nemesis' fault windows; crosses are instance crashes.",
    "operations.png": "Client operations per second by outcome: ok; fail split into refusals "
    "the engine gives as designed (grey: limit reached, already bought) and errors (red: busy, "
    "Stripe failed, instance down); info = outcome unknown (a timeout after the request may "
    "have landed).",
    "seats.png": "Class-rep seats: the stored counter (blue) against the seats actually held "
    "(orange, replayed from purchase writes; its last step is the number counter_consistent "
    "judges) and the limit (red). A gap is a leak or drift; "
    "orange above red is a limit bypass.",
    "webhooks.png": "Webhook delivery: attempts per event (retries and duplicates) and the "
    "responses the engine gave Stripe over time.",
}

#: at most this many violations per invariant, and evidence lines per violation, are rendered
MAX_VIOLATIONS = 25
MAX_EVIDENCE = 40

CSS = """
body { font: 14px/1.45 -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; color: #1d1d1f;
       margin: 0 auto; max-width: 1200px; padding: 0 24px 48px; }
h1 { font-size: 22px; margin: 24px 0 8px; } h2 { font-size: 18px; margin: 32px 0 8px;
     border-bottom: 1px solid #ddd; padding-bottom: 4px; }
.banner { padding: 14px 18px; border-radius: 6px; font-size: 18px; font-weight: 600; margin: 12px 0; }
.banner small { display: block; font-weight: 400; font-size: 14px; margin-top: 4px; }
.pass { background: #e3f5e1; color: #1e6b1a; } .fail { background: #fde2e1; color: #a3160f; }
.unknown { background: #fff3d6; color: #8a5a00; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px;
         font-weight: 600; } .badge.held, .badge.met { background: #e3f5e1; color: #1e6b1a; }
.badge.violated, .badge.missed { background: #fde2e1; color: #a3160f; }
.badge.unknown { background: #fff3d6; color: #8a5a00; }
table { border-collapse: collapse; margin: 8px 0; } th, td { border: 1px solid #ddd;
        padding: 4px 10px; text-align: left; vertical-align: top; } th { background: #f5f5f7; }
td.num { text-align: right; font-variant-numeric: tabular-nums; } td.over { background: #fde2e1; }
pre, code { font: 12px/1.4 ui-monospace, Menlo, Consolas, monospace; }
pre { background: #f5f5f7; padding: 10px; overflow-x: auto; border-radius: 4px; }
table.evidence code { white-space: pre-wrap; word-break: break-all; }
table.evidence td { font-size: 12px; }
.violation { border-left: 4px solid #d62728; padding: 4px 12px; margin: 12px 0; }
.meta { color: #555; } figure { margin: 16px 0; } figure img { max-width: 100%;
        border: 1px solid #eee; } figcaption { color: #555; font-size: 13px; }
.note { background: #fff3d6; padding: 8px 12px; border-radius: 4px; }
.expected, .badge.expected { background: #eceff1; color: #37474f; }
.surprise, .badge.surprise { background: #fff3d6; color: #8a5a00; }
td.pass { background: #f3faf2; } td.fail { background: #fef3f2; }
table.matrix td { min-width: 170px; } a.bad { color: #a3160f; } a.ok { color: #1e6b1a; }
"""


def write_report(
    run_dir: Path,
    summary: Mapping[str, Any],
    scenario_toml: str | None,
    *,
    charts: bool = True,
    policy: str = "all",
) -> Path:
    """Write run_dir/report.html from the checker's summary and the run's stored files; with
    `charts` false, without charts, saying why (the suite's `--charts` `policy`) and how to draw
    them."""
    history = run_dir / "history.jsonl"
    drawn = [run_dir / "charts" / name for name in CHART_FILES] if charts else []
    if charts and not all(p.exists() for p in drawn) and history.exists():
        drawn = make_charts(run_dir)
    violations = list(summary.get("violations") or [])
    wanted = {int(s) for v in _shown(violations) for s in (v.get("evidence") or [])[:MAX_EVIDENCE]}
    lines = read_lines_by_seq(history, wanted) if history.exists() else {}
    title = f"paysim · {summary.get('scenario', '?')} · seed {summary.get('seed', '?')} · " + str(
        summary.get("engine", "?")
    )
    body = [
        f"<h1>{escape(title)}</h1>",
        _banner(summary),
        _replay(summary),
        _engine_errors(summary.get("engine_errors") or []),
        _invariants(summary, violations),
        _violations(violations, lines),
        _slo(summary),
        _charts([p for p in drawn if p.exists()]) if charts else _charts_not_drawn(policy),
        _counts(summary),
        tested_section(summary),
        coverage_section(run_dir / "coverage.json"),
        _scenario(scenario_toml),
    ]
    out = run_dir / "report.html"
    out.write_text(_page(title, body), encoding="utf-8")
    return out


def read_lines_by_seq(history: Path, seqs: set[int]) -> dict[int, str]:
    """The history lines with these seq numbers, streamed (a history can be large)."""
    found: dict[int, str] = {}
    if not seqs:
        return found
    last = max(seqs)
    with history.open(encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            seq = json.loads(line).get("seq")
            if seq in seqs:
                found[seq] = line.rstrip("\n")
            if isinstance(seq, int) and seq >= last:
                break
    return found


# ---- sections


def _banner(summary: Mapping[str, Any]) -> str:
    verdict = str(summary.get("verdict", "unknown"))
    violated = [n for n, s in (summary.get("invariants") or {}).items() if s == "violated"]
    notes = []
    if summary.get("infrastructure"):  # the run could not be judged: say why first
        notes.append(f"{summary['infrastructure']}: not an engine verdict")
    if violated:
        notes.append(f"{len(violated)} invariant(s) violated: {', '.join(violated)}")
    thresholds = summary.get("thresholds") or {}
    if "met" in thresholds:
        notes.append("lock-wait SLOs met" if thresholds["met"] else "lock-wait SLOs missed")
    if "quiescent" in summary:
        notes.append("quiescent at the end" if summary["quiescent"] else "NOT quiescent at the end")
    parts = [f'<div class="banner {escape(verdict)}">{escape(verdict.upper())}']
    parts.append(f"<small>{escape(' · '.join(notes))}</small></div>" if notes else "</div>")
    vacuous = summary.get("vacuous") or []
    if vacuous:
        items = "".join(f"<li>{escape(str(r))}</li>" for r in vacuous)
        parts.append(f'<div class="note">The run may be vacuous:<ul>{items}</ul></div>')
    if summary.get("mode") == "blackbox":
        parts.append(_blackbox_note(summary))
    sha = summary.get("history_sha256")
    if sha:
        parts.append(f'<p class="meta">history sha256 <code>{escape(str(sha))}</code></p>')
    return "".join(parts)


def _blackbox_note(summary: Mapping[str, Any]) -> str:
    """A black-box run: against what, in which time, and which of the scenario's faults were on
    (those that need control of the service are on only when paysim started it)."""
    on = ", ".join(summary.get("faults_on") or []) or "none"
    off = ", ".join(summary.get("faults_off") or [])
    text = (
        f"Black-box run against {summary.get('target', '?')}, in wall-clock time "
        f"({summary.get('wall_s', '?')} s). Faults on: {on}."
    )
    if off:
        text += f" Off (they need control of the service; use --serve): {off}."
    return f'<div class="note">{escape(text)}</div>'


def _replay(summary: Mapping[str, Any]) -> str:
    command = summary.get("replay")
    if not command:
        return ""
    return f"<h2>Replay</h2><pre><code>{escape(str(command))}</code></pre>"


def _invariants(summary: Mapping[str, Any], violations: list[dict[str, Any]]) -> str:
    states = dict(summary.get("invariants") or {})
    names = list(INVARIANTS) + [n for n in states if n not in INVARIANTS]
    counts: dict[str, int] = {}
    for v in violations:
        counts[str(v.get("invariant"))] = counts.get(str(v.get("invariant")), 0) + 1
    rows = []
    for n in names:
        label = f'<a href="#{escape(n)}">{escape(n)}</a>' if counts.get(n) else escape(n)
        state = _badge(str(states.get(n, "unknown")))
        rows.append(
            f"<tr><td>{label}</td><td>{state}</td><td class=num>{counts.get(n, 0)}</td></tr>"
        )
    head = "<tr><th>invariant</th><th>status</th><th>violations</th></tr>"
    return f"<h2>Invariants</h2><table>{head}{''.join(rows)}</table>"


def _shown(violations: list[dict[str, Any]]) -> Iterable[dict[str, Any]]:
    per: dict[str, int] = {}
    for v in violations:
        name = str(v.get("invariant"))
        per[name] = per.get(name, 0) + 1
        if per[name] <= MAX_VIOLATIONS:
            yield v


def _violations(violations: list[dict[str, Any]], lines: dict[int, str]) -> str:
    if not violations:
        return ""
    out = ["<h2>Violations</h2>"]
    by_name: dict[str, list[dict[str, Any]]] = {}
    for v in violations:
        by_name.setdefault(str(v.get("invariant")), []).append(v)
    for name, items in by_name.items():
        out.append(f'<h3 id="{escape(name)}">{escape(name)} ({len(items)})</h3>')
        for v in items[:MAX_VIOLATIONS]:
            out.append(_violation(v, lines))
        if len(items) > MAX_VIOLATIONS:
            out.append(
                f"<p class=meta>… and {len(items) - MAX_VIOLATIONS} more in summary.json</p>"
            )
    return "".join(out)


def _violation(v: Mapping[str, Any], lines: dict[int, str]) -> str:
    facts = []
    for key in ("purchase_id", "session_id"):
        if v.get(key):
            facts.append(f"{key} <code>{escape(str(v[key]))}</code>")
    if v.get("at") is not None:
        facts.append(f"at t = {_num(v['at'])} s (virtual)")
    evidence = [int(s) for s in v.get("evidence") or []]
    shown = evidence[:MAX_EVIDENCE]
    rows = "".join(_evidence_row(s, lines.get(s)) for s in shown)
    if len(evidence) > len(shown):
        rows += f"<tr><td colspan=4>… {len(evidence) - len(shown)} more lines</td></tr>"
    block = (
        "<table class=evidence><tr><th>seq</th><th>t (s)</th><th>type</th>"
        f"<th>history line</th></tr>{rows}</table>"
        if shown
        else "<p class=meta>no history lines cited</p>"
    )
    if evidence:
        facts.append(f"evidence: history seq {', '.join(str(s) for s in evidence)}")
    return (
        f'<div class="violation"><p>{escape(str(v.get("detail", "")))}</p>'
        f"<p class=meta>{' · '.join(facts)}</p>{block}</div>"
    )


def _evidence_row(seq: int, line: str | None) -> str:
    if line is None:
        return f"<tr><td class=num>{seq}</td><td colspan=3>not found in history.jsonl</td></tr>"
    entry = json.loads(line)
    return (
        f"<tr><td class=num>{seq}</td><td class=num>{_num(entry.get('t'))}</td>"
        f"<td>{escape(str(entry.get('type', '')))}</td><td><code>{escape(line)}</code></td></tr>"
    )


def _slo(summary: Mapping[str, Any]) -> str:
    waits = summary.get("lock_wait_ms") or {}
    thresholds = summary.get("thresholds") or {}
    limits = thresholds.get("limits") or {}
    if not waits and not thresholds:
        return ""
    cols = ("count", "p50", "p95", "p99", "max", "timeouts")
    head = "".join(
        f"<th>{c}{' (ms)' if c in ('p50', 'p95', 'p99', 'max') else ''}</th>" for c in cols
    )
    rows = []
    for family, row in sorted(waits.items()):
        cells = []
        for c in cols:
            value = row.get(c)
            limit = _limit(limits, family, c, row)
            over = limit is not None and value is not None and float(value) > float(limit)
            title = f' title="limit {_num(limit)}"' if limit is not None else ""
            cells.append(f'<td class="num{" over" if over else ""}"{title}>{_num(value)}</td>')
        rows.append(f"<tr><td>{escape(family)}</td>{''.join(cells)}</tr>")
    limit_items = "".join(
        f"<tr><td>{escape(str(k))}</td><td class=num>{_num(v)}</td></tr>"
        for k, v in limits.items()
        if not isinstance(v, Mapping) and v is not None
    )
    misses = thresholds.get("misses") or []
    status = ""
    if "met" in thresholds:
        status = f"<p>{_badge('met' if thresholds['met'] else 'missed')}</p>"
    miss_list = "".join(f"<li>{escape(str(m))}</li>" for m in misses)
    return (
        "<h2>Lock-wait SLOs</h2>"
        + status
        + (f"<ul>{miss_list}</ul>" if miss_list else "")
        + (f"<table><tr><th>key family</th>{head}</tr>{''.join(rows)}</table>" if rows else "")
        + (
            f"<table><tr><th>threshold</th><th>limit</th></tr>{limit_items}</table>"
            if limit_items
            else ""
        )
    )


def _limit(limits: Mapping[str, Any], family: str, column: str, row: Mapping[str, Any]) -> Any:
    """The limit for one cell: per family if given, else the scenario-wide `<col>_wait_ms`."""
    scoped = limits.get(family)
    if isinstance(scoped, Mapping) and column in scoped:
        return scoped[column]
    if column == "timeouts" and limits.get("timeout_ratio") is not None:
        attempts = float(row.get("count") or 0) + float(row.get("timeouts") or 0)
        return float(limits["timeout_ratio"]) * attempts if attempts else None
    return limits.get(f"{column}_wait_ms")


def _charts(paths: list[Path]) -> str:
    if not paths:
        return ""
    figures = []
    for path in paths:
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        caption = CHART_CAPTIONS.get(path.name, path.stem.replace("_", " "))
        figures.append(
            f'<figure><img alt="{escape(path.stem)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{escape(caption)}</figcaption></figure>"
        )
    return "<h2>Charts</h2>" + "".join(figures)


def _charts_not_drawn(policy: str) -> str:
    why = (
        "the suite was run with <code>--charts none</code>"
        if policy == "none"
        else "this run passed, and a suite draws charts for the runs that did not "
        "(<code>--charts failing</code>, the default; <code>--charts all</code> draws every "
        "run's)"
    )
    return (
        f'<h2>Charts</h2><p class="meta">Not drawn: {why}. To draw this run\'s now: '
        "<code>paysim report RUN_DIR</code>, RUN_DIR being the folder of this page.</p>"
    )


def _engine_errors(errors: list[dict[str, Any]]) -> str:
    """Exceptions escaping the engine: a crashing engine is the first thing a reader must see."""
    if not errors:
        return ""
    parts = [
        "<h2>Engine exceptions</h2>",
        '<p class="meta">Exceptions that escaped an engine method (each answered as HTTP 500), '
        "counted per method; the first traceback of each distinct one is shown.</p>",
        "<table><tr><th>method</th><th>exception</th><th>times</th><th>first at</th></tr>",
    ]
    for e in errors:
        parts.append(
            f"<tr><td><code>{escape(str(e.get('method')))}</code></td>"
            f"<td>{escape(str(e.get('error')))}</td><td class=num>{_num(e.get('count'))}</td>"
            f"<td class=num>t = {_num(e.get('first_t'))} s</td></tr>"
        )
    parts.append("</table>")
    for e in errors:
        parts.append(
            f"<details open><summary>{escape(str(e.get('method')))}: "
            f"{escape(str(e.get('error')))}</summary>"
            f"<pre>{escape(str(e.get('traceback', '')))}</pre></details>"
        )
    return "".join(parts)


def _counts(summary: Mapping[str, Any]) -> str:
    counts = summary.get("counts") or {}
    if not counts:
        return ""
    rows = "".join(
        f"<tr><td>{escape(k)}</td><td class=num>{_num(v)}</td></tr>" for k, v in _flatten(counts)
    )
    return f"<h2>Counts</h2><table>{rows}</table>"


def _flatten(data: Mapping[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from _flatten(value, f"{name}.")
        else:
            yield name, value


def _scenario(toml: str | None) -> str:
    if not toml:
        return ""
    return f"<h2>Scenario</h2><pre>{escape(toml)}</pre>"


# ---- bits


def _badge(state: str) -> str:
    return f'<span class="badge {escape(state)}">{escape(state)}</span>'


def _num(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:,.0f}" if value.is_integer() else f"{value:,.3f}".rstrip("0").rstrip(".")
    if isinstance(value, int):
        return f"{value:,}"
    return escape(str(value))


def _page(title: str, body: list[str]) -> str:
    return (
        "<!doctype html>\n<html lang=en><head><meta charset=utf-8>"
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>\n"
        + "\n".join(part for part in body if part)
        + "\n</body></html>\n"
    )
