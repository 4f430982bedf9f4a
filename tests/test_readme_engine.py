"""The README's worked engine is real code: extracted from the README, it runs and passes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from simulator.runner import run_scenario
from simulator.scenario_file import load_scenario

ROOT = Path(__file__).resolve().parent.parent


def test_the_worked_engine_in_the_readme_passes_a_ci_scenario(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    readme = (ROOT / "README.md").read_text()
    [code] = re.findall(r"```python\n# my_pkg/small_engine.py\n(.*?)```", readme, re.S)
    (tmp_path / "small_engine.py").write_text(code)
    monkeypatch.syspath_prepend(str(tmp_path))
    scenario = load_scenario(ROOT / "scenarios" / "ci" / "pay-after-cancel.toml")
    summary = run_scenario(scenario, 1, "small_engine:factory", tmp_path / "run").summary
    assert summary["engine_errors"] == []
    assert summary["verdict"] == "pass", summary["violations"]
    assert summary["counts"]["operations"]["ok"] > 0
