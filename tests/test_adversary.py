"""The adversary nemesis: off by default, deterministic, every family attacks, and each forgery
carries the outcome a safe engine must give (the reference gives it)."""

from __future__ import annotations

import dataclasses
import inspect
import json
import random
from pathlib import Path
from typing import Any

import pytest

from reference_impl.reference_engine import ReferenceEngine
from reference_impl.schema import program_doc
from simulator.attacks import ACK, NOT_HONOURED, REFUSE, Forger, paid_completion
from simulator.checkers import HELD, VIOLATED
from simulator.history import read_history
from simulator.judge import judge
from simulator.run import simulate
from simulator.scenario import ATTACKS, AdversarySettings, AttackWeights, Scenario
from simulator.scenario_file import load_scenario
from simulator.services import RecordingFulfilment, as_id
from tests.enginehelpers import run_virtual, world

ROOT = Path(__file__).resolve().parent.parent
HOSTILE = ROOT / "scenarios" / "ci" / "adversary-webhooks.toml"
#: families that are not forged webhooks: real sessions, the success page, cancels
NOT_FORGED = {"foreign_sessions", "success_page_probes", "foreign_cancels"}


def test_every_attack_family_is_built_and_documented() -> None:
    built = {name.removeprefix("_") for name, _ in inspect.getmembers(Forger)} & set(ATTACKS)
    assert built | NOT_FORGED == set(ATTACKS) and not built & NOT_FORGED
    assert set(f.name for f in dataclasses.fields(AdversarySettings().weights)) == set(ATTACKS)


def test_the_adversary_is_off_by_default_and_leaves_histories_alone() -> None:
    assert not Scenario().adversary.enabled
    plain = load_scenario(ROOT / "scenarios" / "ci" / "double-click.toml")
    other_weights = dataclasses.replace(
        plain,
        adversary=AdversarySettings(enabled=False, attacks=500, start=0.0, attackers=7),
    )
    a, b = simulate(plain, 1), simulate(other_weights, 1)
    assert a.history_sha256 == b.history_sha256


def test_an_adversary_run_is_deterministic_and_attacks_with_every_family(tmp_path: Path) -> None:
    scenario = load_scenario(HOSTILE)
    scenario = dataclasses.replace(
        scenario,
        adversary=dataclasses.replace(
            scenario.adversary,
            attacks=150,
            weights=AttackWeights(**{family: 1.0 for family in ATTACKS}),
        ),
    )
    first = simulate(scenario, 7, out_dir=tmp_path / "a")
    second = simulate(scenario, 7, out_dir=tmp_path / "b")
    assert first.history_sha256 == second.history_sha256
    history = read_history(tmp_path / "a" / "history.jsonl")
    families = {
        e["variant"].split(":")[1]
        for e in history
        if e["type"] == "probe.forged" and e["variant"].startswith("adversary:")
    }
    families |= {e["family"] for e in history if e["type"] == "adversary.attack"}
    families |= (
        {"foreign_sessions"}
        if any(e["type"] == "adversary.foreign_session" for e in history)
        else set()
    )
    assert families == set(ATTACKS)
    # the attacker's genuine payments still complete their purchases at the end
    paid = {e["session_id"] for e in history if e["type"] == "customer.pay" and e["accepted"]}
    completed = {
        p["stripe_session_id"] for p in first.final_state["purchases"] if p["status"] == "completed"
    }
    assert paid and paid <= completed


def test_a_tolerance_of_zero_turns_replay_protection_off_and_the_harness_says_so(
    tmp_path: Path,
) -> None:
    """`webhook_tolerance = 0` means "check no age", as `tolerance=0` does to the Stripe SDKs: a
    real footgun. Replays past any tolerance then get 2xx, which `signature_enforced` reports;
    at the default 300 s the same attacks are refused."""
    base = load_scenario(HOSTILE)
    only_replays = AttackWeights(**{family: float(family == "replays") for family in ATTACKS})
    verdicts = {}
    for tolerance in (0.0, 300.0):
        scenario = dataclasses.replace(
            base,
            adversary=dataclasses.replace(base.adversary, attacks=20, weights=only_replays),
            engine_config=dataclasses.replace(base.engine_config, webhook_tolerance=tolerance),
            faults=(),
        )
        out = tmp_path / f"t{tolerance:g}"
        result = simulate(scenario, 1, out_dir=out)
        history = read_history(out / "history.jsonl")
        verdicts[tolerance] = judge(
            history, result.final_state, result.ledgers, scenario
        ).invariants["signature_enforced"]
    assert verdicts == {0.0: VIOLATED, 300.0: HELD}


@pytest.mark.parametrize("family", sorted(set(ATTACKS) - NOT_FORGED))
def test_the_reference_gives_each_forgery_its_expected_outcome(family: str) -> None:
    async def main() -> None:
        async with world(ReferenceEngine, programs=[program_doc("prog_1", class_rep_limit=3)]) as w:
            result = await w.engine.create_purchase("user_1", "prog_1", class_rep=True)
            forger = Forger(random.Random(family), w.fake.webhook_secret, 300.0, w.env.clock.now)
            for n in range(30):
                session = w.fake.sessions[result.session_id].to_json()
                base = paid_completion(session, f"evt_adv_{n}", int(w.env.clock.now()))
                forgery = forger.build(family, base, n)
                db = w.env.store.sync
                before = {
                    c: list(db[c].find({})) for c in ("purchases", "programs", "purchase_slots")
                }
                status = await w.engine.handle_webhook(forgery.payload, forgery.header)
                after = {c: list(db[c].find({})) for c in before}
                assert after == before, forgery.variant
                if forgery.expect == REFUSE:
                    assert status == 400, forgery.variant
                elif forgery.expect == ACK:
                    assert 200 <= status < 300, forgery.variant
                else:
                    assert forgery.expect == NOT_HONOURED
            assert not w.fulfilment.grants

    run_virtual(main)


def test_a_port_handed_an_object_for_an_id_records_it_as_a_string() -> None:
    """A hostile id an engine let through must not crash the ledgers or the checkers."""
    assert as_id("pur_1") == "pur_1" and as_id(None) is None
    assert as_id({"$gt": ""}) == '<dict> {"$gt": ""}'
    seen: list[dict[str, Any]] = []
    grants = RecordingFulfilment(record=lambda type, **f: seen.append(f))

    async def main() -> None:
        await grants.grant(purchase_id={"$gt": ""}, user_id="u", program_id="p", session_id=[1])  # type: ignore[arg-type]

    run_virtual(main)
    assert seen[0]["purchase_id"] == '<dict> {"$gt": ""}' and seen[0]["session_id"] == "<list> [1]"
    json.dumps(seen)


@pytest.mark.parametrize(
    ("toml", "key", "says"),
    [
        ("[adversary]\nenabled = true\n[adversary.weights]\n"
         + "".join(f"{k} = 0\n" for k in ATTACKS), "adversary.weights", "at least one"),
        ("[adversary]\nattacks = -1\n", "adversary.attacks", ""),
        ("[adversary]\nenabled = true\ndragons = 1\n", "adversary.dragons", "unknown key"),
        ("[adversary.weights]\nreplays = -0.5\n", "adversary.weights.replays", ""),
    ],
)  # fmt: skip
def test_bad_adversary_keys_are_one_line_naming_the_key(
    tmp_path: Path, toml: str, key: str, says: str
) -> None:
    from simulator.scenario_file import ScenarioError

    path = tmp_path / "hostile.toml"
    path.write_text(toml, encoding="utf-8")
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    message = str(info.value)
    assert key in message and says in message and "\n" not in message


def test_the_sweep_gets_its_grace_after_the_attackers_last_request(tmp_path: Path) -> None:
    """explore --guided on the reference, search seed 2, example 410 (2026-12-07): against a
    Stripe with a 40 s round trip each attack takes minutes, so attacks drawn inside a 90 s
    workload went on until t=400 s and more, after every customer. The liveness phase counted
    the sweep's grace from the customers alone and ended before the sweep could resolve the
    attacker's creates that timed out: 27 purchases "stuck", no engine's doing."""
    from simulator.runner import run_scenario
    from simulator.scenario import Durations, WorkloadPart

    slow = Scenario(
        name="slow-stripe-long-attack",
        stripe_latency_s=40.0,
        workload=(WorkloadPart(kind="double_click", count=1, at=1.0),),
        durations=Durations(workload_s=90.0),
        adversary=AdversarySettings(enabled=True),
    )
    report = run_scenario(slow, 2, "reference", tmp_path / "run")
    history = read_history(tmp_path / "run" / "history.jsonl")
    attacker = [e["t"] for e in history if e["type"] == "op.invoke" and "adv_" in e["user_id"]]
    liveness = next(e["t"] for e in history if e["type"] == "liveness.start")
    assert max(attacker) > slow.durations.workload_s  # the attack outlasted the window
    assert liveness > max(attacker)  # and the liveness phase waited for it
    assert report.summary["invariants"]["no_stuck_purchase"] == HELD


def test_a_signed_attack_that_waits_for_an_instance_is_signed_again(tmp_path: Path) -> None:
    """explore --guided on the reference, search seed 45, example 145 (2026-12-07): with a
    5 s signature tolerance and an instance that crashes at every store call, an event about
    an unknown object (which a safe engine acknowledges) waited 5 s for the restart and was
    posted with its first signature, now past the tolerance: the engine's right 400 read as a
    refused genuine event (`webhooks_acknowledged`). Stripe signs every attempt afresh; the
    adversary's validly signed attacks now do too."""
    from simulator.runner import run_scenario
    from simulator.scenario import Durations, FaultSpec, WorkloadPart

    weights = {name: 0.0 for name in ATTACKS}
    weights["unknown_objects"] = 1.0
    crashing = Scenario(
        name="signed-attack-waits-for-a-restart",
        workload=(WorkloadPart(kind="steady", count=1, rate_per_s=0.5, duration_s=15.0),),
        faults=(FaultSpec(kind="crash", end=30.0),),
        engine_config=dataclasses.replace(Scenario().engine_config, webhook_tolerance=5.0),
        durations=Durations(workload_s=300.0),
        adversary=AdversarySettings(enabled=True, start=3.0, weights=AttackWeights(**weights)),
    )
    report = run_scenario(crashing, 1, "reference", tmp_path / "run")
    history = read_history(tmp_path / "run" / "history.jsonl")
    restarts = [e["t"] for e in history if e["type"] == "instance.start"][1:]
    acks = [e for e in history if e["type"] == "adversary.attack" and e["expect"] == ACK]
    assert restarts and acks
    assert any(e["t"] in restarts and e["status"] == 200 for e in acks)  # posted on a restart
    assert report.summary["invariants"]["webhooks_acknowledged"] == HELD
