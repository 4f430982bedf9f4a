"""A crashing engine is visible: exceptions escaping an engine method are counted per method,
the first traceback of each is shown in the terminal and the report, and a stub returning None
is not an `op.ok`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from simulator.cli import main
from simulator.demo import DEMO
from simulator.runner import run_scenario
from simulator.suite import run_case

BROKEN_ENGINE = '''
from reference_impl.reference_engine import ReferenceEngine


class Broken(ReferenceEngine):
    async def create_purchase(self, user_id, program_id, class_rep):
        return self.settings.price_of(program_id)  # no such attribute


class Stub(ReferenceEngine):
    async def create_purchase(self, user_id, program_id, class_rep):
        return None  # the README's stub, before it is written
'''


@pytest.fixture
def engines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "user_engines.py").write_text(BROKEN_ENGINE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _history(run_dir: Path) -> list[dict[str, object]]:
    return [json.loads(x) for x in (run_dir / "history.jsonl").read_text().splitlines()]


def test_an_engine_raising_on_every_create_is_counted_with_its_traceback(engines: Path) -> None:
    report = run_case(DEMO, 1, "user_engines:Broken", engines / "run")
    creates = [e for e in _history(engines / "run") if e["type"] == "op.invoke"]
    creates = [e for e in creates if e["op"] == "create"]
    [error] = report.summary["engine_errors"]
    assert error["method"] == "create_purchase"
    assert error["count"] == len(creates) > 1
    assert error["error"].startswith("AttributeError: ")
    assert "user_engines.py" in error["where"]
    assert "self.settings.price_of(program_id)" in error["traceback"]
    page = (engines / "run" / "report.html").read_text()
    assert "<h2>Engine exceptions</h2>" in page and "price_of" in page


def test_the_terminal_shows_the_count_and_the_first_traceback(engines: Path) -> None:
    scenario = engines / "demo.toml"
    from simulator.scenario_file import scenario_to_toml

    scenario.write_text(scenario_to_toml(DEMO))
    result = CliRunner().invoke(
        main, ["run", str(scenario), "--engine", "user_engines:Broken", "--out", "r"]
    )
    assert result.exit_code == 1, result.output
    assert "engine raised in create_purchase" in result.stdout
    assert "| AttributeError:" in result.stdout
    assert "price_of(program_id)" in result.stdout


def test_a_stub_returning_none_is_not_an_ok_operation(engines: Path) -> None:
    report = run_scenario(DEMO, 1, "user_engines:Stub", engines / "stub")
    history = _history(engines / "stub")
    answers = [e for e in history if e["type"].startswith("op.") and e.get("op") == "create"]
    answers = [e for e in answers if e["type"] != "op.invoke"]
    assert answers and all(e["type"] == "op.info" for e in answers)
    assert "create_purchase returned NoneType, expected PurchaseResult" in answers[0]["message"]
    [error] = report.summary["engine_errors"]
    assert error["error"].startswith("BadReturn: create_purchase returned NoneType")


def test_the_reference_engine_raises_nothing_and_refusals_are_not_errors(tmp_path: Path) -> None:
    summary = run_scenario(DEMO, 1, "reference", tmp_path).summary
    assert summary["counts"]["operations"]["fail"] > 0  # limit reached: refused, not crashed
    assert summary["engine_errors"] == []
