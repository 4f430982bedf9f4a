"""The engine-coverage section of report.html and index.html (from a coverage.json file)."""

from __future__ import annotations

import json
from html import escape
from pathlib import Path
from typing import Any

#: unreached lines/branches listed per file at most (the JSON file lists all)
MAX_LISTED = 200


def coverage_section(path: Path) -> str:
    """Nothing when the run or suite was not measured (no `--coverage`)."""
    if not path.exists():
        return ""
    report: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    out = [
        "<h2>Engine coverage</h2>",
        f"<p>{report['branches_reached']} of {report['branches']} branches reached "
        f"(<b>{report['branch_percent']:.1f} %</b>), {report['statements_reached']} of "
        f"{report['statements']} lines, in {escape(', '.join(report['modules']))}. "
        f"Measured by coverage.py in branch mode on the engine's own modules; the full list "
        f"is in <code>{escape(path.name)}</code>.</p>",
    ]
    for name, entry in sorted(report["files"].items()):
        rows = [
            f"<tr><td class=num>{u['line']}</td><td>line never ran</td>"
            f"<td><code>{escape(u['source'])}</code></td></tr>"
            for u in entry["unreached_lines"]
        ]
        rows += [
            f"<tr><td class=num>{b['from']} → {'exit' if b['to'] < 0 else b['to']}</td>"
            f"<td>branch never taken</td><td><code>{escape(b['source'])}</code> → "
            f"<code>{escape(b['target'])}</code></td></tr>"
            for b in entry["unreached_branches"]
        ]
        head = (
            f"<h3>{escape(name)}: {entry['branches_reached']} of {entry['branches']} branches</h3>"
        )
        if not rows:
            out.append(head + "<p>every line and branch reached</p>")
            continue
        more = len(rows) - MAX_LISTED
        out.append(
            head
            + "<table><tr><th>line</th><th>what</th><th>source</th></tr>"
            + "".join(rows[:MAX_LISTED])
            + "</table>"
            + (f"<p>… and {more} more (see the JSON file)</p>" if more > 0 else "")
        )
    return "".join(out)
