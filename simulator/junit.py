"""JUnit XML for CI: one testcase per scenario × seed, so a build page lists what broke.

- classname is the scenario's name, name is `"{engine} seed {seed}"`; time is wall seconds (the
  whole run: simulation, checkers, charts, report), the simulated span a `virtual_s` property.
- an invariant violated: `<failure type="invariant">`, each violated invariant with its details
  and the replay command in the text.
- a vacuous run (it never showed the evidence its scenario expects): `<failure type="vacuous">` —
  a verdict that means nothing must not pass CI.
- an unknown verdict (a checker could not decide, e.g. no quiescence): `<error type="unknown">`:
  not a bug found in the engine, but the run proves nothing either.
- thresholds (lock-wait SLOs) missed while invariants held: `<failure type="threshold">`.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: details shown per invariant; the rest are counted (the report has them all)
MAX_DETAILS = 5


def testcase(
    summary: dict[str, Any], report: Path | None = None, seconds: float | None = None
) -> ET.Element:
    """`seconds`: the wall time the run took whole (simulation, checkers, charts, report), which
    is what a CI page adds up; the simulated span is a property, not the time."""
    wall = seconds if seconds is not None else float(summary.get("wall_s") or 0.0)
    case = ET.Element(
        "testcase",
        classname=str(summary["scenario"]),
        name=f"{summary['engine']} seed {summary['seed']}",
        time=f"{wall:.3f}",
    )
    properties = ET.SubElement(case, "properties")
    for name, key in (("virtual_s", "virtual_s"), ("simulation_wall_s", "wall_s")):
        if summary.get(key) is not None:
            ET.SubElement(properties, "property", name=name, value=f"{float(summary[key]):.3f}")
    replay = f"replay: {summary.get('replay', '')}"
    violations = summary.get("violations") or []
    vacuous = summary.get("vacuous") or []
    if summary.get("infrastructure"):
        error = ET.SubElement(
            case, "error", type="infrastructure", message=str(summary["infrastructure"])
        )
        error.text = "\n".join(
            [
                "the run's own infrastructure failed: no verdict on the engine",
                str(summary["infrastructure"]),
                replay,
            ]
        )
    elif violations:
        names = sorted({v["invariant"] for v in violations})
        failure = ET.SubElement(
            case, "failure", type="invariant", message="violated: " + ", ".join(names)
        )
        failure.text = "\n".join([*_details(violations, names), replay])
    elif vacuous:
        failure = ET.SubElement(
            case, "failure", type="vacuous", message="vacuous: " + "; ".join(vacuous)
        )
        failure.text = "\n".join([*vacuous, replay])
    elif summary["verdict"] != "pass":
        undecided = sorted(k for k, s in (summary.get("invariants") or {}).items() if s != "held")
        error = ET.SubElement(
            case, "error", type="unknown", message="undecided: " + ", ".join(undecided)
        )
        error.text = "\n".join(
            ["the checkers could not decide (e.g. the run never became quiescent)", replay]
        )
    elif not summary["thresholds"]["met"]:
        misses = summary["thresholds"]["misses"]
        failure = ET.SubElement(
            case, "failure", type="threshold", message="thresholds missed: " + "; ".join(misses)
        )
        failure.text = "\n".join([*misses, replay])
    if report is not None:
        ET.SubElement(case, "system-out").text = f"report: {report}"
    return case


def _details(violations: list[dict[str, Any]], names: list[str]) -> list[str]:
    lines = []
    for name in names:
        mine = [v for v in violations if v["invariant"] == name]
        lines.append(f"{name}: violated {len(mine)}×")
        for v in mine[:MAX_DETAILS]:
            where = " ".join(
                f"{k}={v[k]}" for k in ("purchase_id", "session_id", "at") if v.get(k) is not None
            )
            lines.append(f"  - {v['detail']}" + (f" ({where})" if where else ""))
        if len(mine) > MAX_DETAILS:
            lines.append(f"  … and {len(mine) - MAX_DETAILS} more (see the report)")
    return lines


def write_junit(
    path: Path,
    runs: Sequence[tuple[dict[str, Any], Path | None] | tuple[dict[str, Any], Path | None, float]],
    suite: str = "paysim",
    elapsed_s: float | None = None,
) -> Path:
    """Write `runs` (summary, report path or None[, wall seconds of the run]) as one
    `<testsuite>` inside `<testsuites>`; its time is `elapsed_s` (runs overlap on workers)."""
    cases = [testcase(*run) for run in runs]
    failures = sum(1 for c in cases if c.find("failure") is not None)
    errors = sum(1 for c in cases if c.find("error") is not None)
    seconds = elapsed_s if elapsed_s is not None else sum(float(c.get("time", "0")) for c in cases)
    counts = {
        "tests": str(len(cases)),
        "failures": str(failures),
        "errors": str(errors),
        "time": f"{seconds:.3f}",
    }
    root = ET.Element("testsuites", **counts)
    testsuite = ET.SubElement(root, "testsuite", name=suite, **counts)
    testsuite.extend(cases)
    ET.indent(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)
    return path
