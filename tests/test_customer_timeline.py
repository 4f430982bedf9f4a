"""Customers over the whole life of a payment: late, returning, paying by slow bank debit, and
landing on the success page whatever they paid with; and the run saying what it tested."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from reference_impl.ports import EngineConfig
from simulator import run as run_module
from simulator.runner import run_scenario
from simulator.scenario import CustomerMix, Durations, ProgramSpec, Scenario, WorkloadPart
from simulator.scenario_file import load_scenario
from simulator.tested import behaviours

NOBODY = dict(
    pay=0.0,
    decline_then_pay=0.0,
    decline=0.0,
    async_success=0.0,
    async_failure=0.0,
    abandon=0.0,
    cancel=0.0,
    pay_after_cancel=0.0,
)


def scenario(**mix: Any) -> Scenario:
    return Scenario(
        name="timeline",
        programs=(ProgramSpec(class_rep_limit=5),),
        workload=(WorkloadPart(kind="herd", count=3, at=1.0),),
        customers=CustomerMix(**{**NOBODY, **mix}),
        engine_config=EngineConfig(session_ttl=3600.0),
        durations=Durations(workload_s=60.0),
    )


def history(out: Path) -> list[dict[str, Any]]:
    lines = (out / "history.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


class Counting(random.Random):
    draws = 0

    def random(self) -> float:
        Counting.draws += 1
        return super().random()


def test_scenarios_without_the_new_behaviours_never_draw_from_the_timeline_stream(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = run_module.RandomStreams.stream

    def stream(self: Any, name: str) -> random.Random:
        return Counting(7) if name == "customer_timeline" else real(self, name)

    monkeypatch.setattr(run_module.RandomStreams, "stream", stream)
    Counting.draws = 0
    mix = dict(pay=1.0, async_success=1.0, async_failure=1.0, decline_then_pay=1.0, cancel=1.0)
    report = run_scenario(scenario(**mix), 3, "reference", tmp_path)
    assert report.verdict == "pass"
    assert Counting.draws == 0
    # and it does draw once a behaviour is on (the counter above is live)
    run_scenario(scenario(pay=1.0, late_share=0.5), 3, "reference", tmp_path / "on")
    assert Counting.draws > 0


def test_late_customers_act_past_expiry_and_are_turned_away(tmp_path: Path) -> None:
    late = scenario(pay=1.0, late_share=1.0, late_think_s=(5000.0, 6000.0))
    report = run_scenario(late, 1, "reference", tmp_path)
    entries = history(tmp_path)
    acts = [e for e in entries if e["type"] == "customer.action"]
    assert len(acts) == 3 and all(5000.0 <= e["t"] <= 6001.0 for e in acts)
    assert [e["accepted"] for e in entries if e["type"] == "customer.pay"] == [False] * 3
    assert report.summary["counts"]["fulfilments"] == 0
    assert report.verdict == "pass"


def test_bank_debits_settle_days_later_and_the_success_page_opens_while_unpaid(
    tmp_path: Path,
) -> None:
    slow = scenario(
        async_success=1.0, settle_after_s=(86400.0, 172800.0), redirect_every_method=True
    )
    report = run_scenario(slow, 2, "reference", tmp_path)
    entries = history(tmp_path)
    sessions = [e for e in entries if e["type"] == "stripe.session"]
    for done in [e for e in sessions if e["action"] == "completed_unpaid"]:
        paid = next(e for e in sessions if e["action"] == "async_paid" and e["id"] == done["id"])
        assert 86400.0 <= paid["t"] - done["t"] <= 172800.0
        redirects = [
            e["t"]
            for e in entries
            if e["type"] == "op.invoke" and e["op"] == "redirect" and e["session_id"] == done["id"]
        ]
        assert redirects == [done["t"], paid["t"]]  # while unpaid, and once it settled
    assert report.summary["counts"]["fulfilments"] == 3
    assert report.verdict == "pass"


def test_the_seed_creates_card_only_sessions_so_its_bank_debit_payers_are_turned_away(
    tmp_path: Path,
) -> None:
    report = run_scenario(scenario(async_success=1.0), 1, "seed", tmp_path)
    results = [e["result"] for e in history(tmp_path) if e["type"] == "stripe.customer"]
    # the herd's creates collide on the seed's order number: every customer who got a checkout
    # page (at least one) is turned away
    assert results and set(results) == {"method_unavailable"}
    assert report.summary["counts"]["fulfilments"] == 0


@pytest.mark.parametrize(
    ("action", "returns"),
    [("buy_again", 1), ("second_tab", 1), ("cancel_then_old_tab", 1), ("debit_then_buy_again", 1)],
)
def test_returning_customers_come_back_later(tmp_path: Path, action: str, returns: int) -> None:
    back = scenario(**{action: 1.0}, return_after_s=(7000.0, 8000.0))
    report = run_scenario(back, 1, "reference", tmp_path)
    entries = history(tmp_path)
    acted = {e["user_id"]: e["t"] for e in entries if e["type"] == "customer.action"}
    came = [e for e in entries if e["type"] == "customer.return"]
    assert len(came) == 3 * returns
    assert all(7000.0 <= e["t"] - acted[e["user_id"]] <= 8000.0 + 60 for e in came)
    assert report.verdict == "pass", report.summary["violations"]


def test_the_summary_says_what_was_on_and_off_for_this_engine(tmp_path: Path) -> None:
    sc = replace(scenario(pay=1.0), name="said")
    off = {b.name: b for b in behaviours(sc, redirect_capable=False)}
    assert not off["success-page race"].on
    assert off["success-page race"].why == "the engine has no handle_success_redirect"
    on = {b.name: b for b in behaviours(sc, redirect_capable=True)}
    assert on["success-page race"].on
    assert not on["delayed payment methods"].on
    seed = run_scenario(sc, 1, "seed", tmp_path / "seed").summary["tested"]
    race = next(b for b in seed if b["name"] == "success-page race")
    assert race == {
        "name": "success-page race",
        "on": False,
        "why": "the engine has no handle_success_redirect",
    }
    ref = run_scenario(sc, 1, "reference", tmp_path / "ref").summary["tested"]
    assert next(b for b in ref if b["name"] == "success-page race")["on"] is True


def reference_by_function(env: Any) -> Any:
    """A `module:factory` function, as a user's engine is often given: it has no methods of
    the engine it builds, so asking the factory whether it offers the success page says no."""
    from reference_impl.reference_engine import ReferenceEngine

    return ReferenceEngine(env)


def test_a_function_factory_gets_the_success_page_race_of_the_engine_it_builds(
    tmp_path: Path,
) -> None:
    assert not hasattr(reference_by_function, "handle_success_redirect")
    sc = replace(scenario(pay=1.0), name="by-function")
    engine = f"{__name__}:reference_by_function"
    report = run_scenario(sc, 1, engine, tmp_path)
    race = next(b for b in report.summary["tested"] if b["name"] == "success-page race")
    assert race["on"] is True, race
    # and the race really ran: the customers' success pages called the engine
    redirects = [e for e in history(tmp_path) if e["type"] == "op.ok" and e["op"] == "redirect"]
    assert len(redirects) == 3
    assert report.verdict == "pass", report.summary["violations"]


def test_every_ci_scenario_of_a_hazard_turns_it_on() -> None:
    hazards = {
        "late-customers": "think times past session expiry",
        "buy-again-near-expiry": "customers who come back (Buy again, old tab, second tab, cancel then pay)",
        "second-tab": "customers who come back (Buy again, old tab, second tab, cancel then pay)",
        "cancel-then-old-tab": "customers who come back (Buy again, old tab, second tab, cancel then pay)",
        "bank-debit-over-days": "success page for an unpaid (delayed-method) session",
    }
    for stem, name in hazards.items():
        sc = load_scenario(Path("scenarios/ci") / f"{stem}.toml")
        found = {b.name: b for b in behaviours(sc, redirect_capable=True)}
        assert found[name].on, (stem, found[name])
