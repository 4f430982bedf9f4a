"""Crash points before side effects, and the idempotent fulfilment port that makes a grant safe
to make again: the port, the nemesis' hook, the evidence, the sink, and a whole run."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import httpx
import trio

from simulator.blackbox.sinks import SinkApp
from simulator.checkers import HELD, VIOLATED
from simulator.checkers.evidence import Evidence
from simulator.fake_stripe.spill import Spill
from simulator.scenario import FaultSpec
from simulator.services import FakeEmail, RecordingFulfilment
from tests.test_payment_harms import invariants
from tests.test_simulation import BASE, of, run

GRANT = {"purchase_id": "p1", "user_id": "u1", "program_id": "prog_1", "session_id": "cs_1"}


def _grants(fulfilment: RecordingFulfilment, *keys: str | None) -> list[dict[str, Any]]:
    log: list[dict[str, Any]] = []
    fulfilment.record = lambda kind, **f: log.append({"type": kind, **f})

    async def main() -> None:
        for key in keys:
            await fulfilment.grant(**GRANT, idempotency_key=key)

    anyio.run(main, backend="trio")
    return log


def test_a_repeated_key_grants_once_and_no_key_grants_every_time() -> None:
    keyed = RecordingFulfilment()
    log = _grants(keyed, "fulfilment:p1", "fulfilment:p1", "fulfilment:p2")
    assert [e["type"] for e in log] == ["fulfilment", "fulfilment.deduplicated", "fulfilment"]
    assert len(keyed.grants) == 2  # a new key is a new grant (no_double_completion judges it)
    unkeyed = RecordingFulfilment()
    assert [e["type"] for e in _grants(unkeyed, None, None)] == ["fulfilment", "fulfilment"]
    assert len(unkeyed.grants) == 2


def test_the_seen_keys_of_a_spilled_ledger_are_shared_by_every_instance_view() -> None:
    spilled = RecordingFulfilment()
    spilled.spill_to(Spill())
    first, second = spilled.on("i0"), spilled.on("i1")
    _grants(first, "fulfilment:p1")
    log = _grants(second, "fulfilment:p1")
    assert [e["type"] for e in log] == ["fulfilment.deduplicated"]
    assert [g.instance for g in spilled.grants] == ["i0"]


def test_a_side_effect_crash_shows_its_own_fault_and_not_a_store_crash() -> None:
    def shown(reason: str) -> list[str]:
        evidence = Evidence()
        evidence.observe({"type": "instance.crash", "reason": reason, "instance": "i0"})
        return evidence.missing(["crash"], ["crash", "crash_before_side_effect"])

    assert shown("crash point before side effect fulfilment.grant") == ["fault:crash"]
    assert shown("crash point before purchases.update_one") == ["fault:crash_before_side_effect"]


def test_the_nemesis_crashes_an_instance_before_its_grants_and_receipts_only(
    tmp_path: Path,
) -> None:
    fault = FaultSpec(kind="crash_before_side_effect", target="any", probability=0.5, end=100.0)
    _, history = run(tmp_path, replace(BASE, faults=(fault,)))
    crashes = of(history, "instance.crash")
    reasons = {c["reason"] for c in crashes}
    assert reasons <= {
        "crash point before side effect fulfilment.grant",
        "crash point before side effect email.send_receipt",
    }
    assert crashes
    # the same scenario with the fault on another instance: the only one, i0, never crashes
    elsewhere = replace(fault, target="i1")
    _, calm = run(tmp_path, replace(BASE, faults=(elsewhere,)), name="calm")
    assert of(calm, "instance.crash") == []


def test_the_http_sink_grants_once_per_key_and_refuses_a_bad_key() -> None:
    fulfilment = RecordingFulfilment()
    app = SinkApp(fulfilment, FakeEmail())

    async def main() -> list[int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://sink") as client:
            bodies = [
                {**GRANT, "idempotency_key": "fulfilment:p1"},
                {**GRANT, "idempotency_key": "fulfilment:p1"},
                {**GRANT, "idempotency_key": {"$gt": ""}},
                GRANT,
            ]
            return [(await client.post("/fulfilment", json=b)).status_code for b in bodies]

    assert trio.run(main) == [200, 200, 400, 200]
    assert len(fulfilment.grants) == 2  # the keyed one once, the unkeyed one


def test_a_grant_a_crash_stopped_is_caught_unless_the_sweep_makes_it(tmp_path: Path) -> None:
    """crash-before-side-effect: the instance dies after `completed` is written and before the
    grant. The reference's sweep grants what is still owed; an engine that grants only on the
    path that completed leaves the customer without access."""
    lost = invariants("crash-before-side-effect", 1, "mutant:forgets-owed-grants", tmp_path)
    assert lost["completion_delivered"] == VIOLATED
    fixed = invariants("crash-before-side-effect", 1, "reference", tmp_path)
    assert fixed["completion_delivered"] == HELD
    assert fixed["no_double_completion"] == HELD
    history = (tmp_path / "reference" / "history.jsonl").read_text()
    assert "crash point before side effect fulfilment.grant" in history  # the world happened
