"""Memory that a long run must not keep: settled fake-Stripe state goes to disk (spill.py), the
idempotency cache keeps only requests in flight in memory, the expiry heap drops closed sessions,
and the final state and ledgers are written one record at a time, byte for byte as before."""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path
from typing import Any

import anyio
import pytest
import stripe

from simulator.bench_scenarios import purchases_scenario
from simulator.fake_stripe import FakeStripe
from simulator.fake_stripe.spill import ObjectTable, RecordLog, Spill
from simulator.run import _write_json, simulate, write_json_lists
from simulator.scenario import WorkloadPart
from simulator.scenario_file import load_scenario
from simulator.services import FakeEmail, RecordingFulfilment
from simulator.workload import Arrival, plan_arrivals
from tests.stripehelpers import make_fake, run, session_params

PURCHASES = 40


async def create(client: stripe.StripeClient, key: str) -> Any:
    return await client.v1.checkout.sessions.create_async(
        session_params(), {"idempotency_key": key}
    )


def spilled_fake(tg: Any, spill: Spill) -> FakeStripe:
    fake = make_fake(tg)
    fake.spill_to(spill)
    return fake


def settle_purchases(spilled: bool) -> dict[str, Any]:
    """N purchases (paid, declined and left open, paid asynchronously; one expired through the
    API), and what the fake shows afterwards."""

    async def main() -> dict[str, Any]:
        spill = Spill()
        async with anyio.create_task_group() as tg:
            fake = spilled_fake(tg, spill) if spilled else make_fake(tg)
            client = fake.client()
            ids = [(await create(client, f"k{n}")).id for n in range(PURCHASES)]
            for n, session_id in enumerate(ids):
                flow = ("card", "decline", "async_success")[n % 3]
                await fake.customer_pay(session_id, flow, settle_after_s=1.0)
            await client.v1.checkout.sessions.expire_async(ids[1])  # a declined one
            sessions = fake.sessions
            seen = {
                "live": len(sessions.live()) if isinstance(sessions, ObjectTable) else None,
                "len": (len(sessions), len(fake.payment_intents), len(fake.events)),
                "ids": list(sessions),
                "sessions": [vars_of(s) for s in sessions.values()],
                "by_key": {k: vars_of(sessions[k]) for k in ids},
                "items": [(k, vars_of(v)) for k, v in sessions.items()],
                "intents": [vars_of(fake.payment_intents[k]) for k in fake.payment_intents],
                "events": list(fake.events),
                "slices": (fake.events[-1], fake.events[3:5]),
                "paid": fake.paid_session_ids(),
                "session_of": [fake.session_id_of(e) for e in fake.events],
            }
            fake.stop()
            tg.cancel_scope.cancel()
        spill.close()
        return seen

    return run(main)


def test_settled_sessions_leave_memory_and_read_back_equal() -> None:
    """After N paid or expired purchases the in-memory table holds only the open sessions, and
    everything reads back as it does without a spill."""
    spilled, plain = settle_purchases(True), settle_purchases(False)
    # the declined ones stay open, but for the one expired through the API
    assert spilled.pop("live") == sum(1 for n in range(PURCHASES) if n % 3 == 1) - 1
    plain.pop("live")
    assert spilled["len"][0] == PURCHASES
    assert spilled == plain


def vars_of(obj: Any) -> dict[str, Any]:
    return {name: getattr(obj, name) for name in obj.__dataclass_fields__}


def test_refund_of_a_settled_intent_is_written_back() -> None:
    async def main() -> None:
        spill = Spill()
        async with anyio.create_task_group() as tg:
            fake = spilled_fake(tg, spill)
            client = fake.client()
            session = await create(client, "k")
            await fake.customer_pay(session.id, "card")
            assert session.id not in fake.sessions.live()  # type: ignore[attr-defined]
            intent_id = fake.sessions[session.id].payment_intent
            assert intent_id is not None
            await client.v1.refunds.create_async({"payment_intent": intent_id, "amount": 1000})
            assert fake.payment_intents[intent_id].amount_refunded == 1000
            await client.v1.refunds.create_async({"payment_intent": intent_id})
            assert fake.refunded_payment_intents() == {intent_id}
            with pytest.raises(stripe.InvalidRequestError) as info:
                await client.v1.refunds.create_async({"payment_intent": intent_id})
            assert info.value.code == "charge_already_refunded"
            expanded = await client.v1.checkout.sessions.retrieve_async(
                session.id, {"expand": ["payment_intent"]}
            )
            assert expanded.payment_intent.id == intent_id
            event = await client.v1.events.retrieve_async(fake.events[0]["id"])
            assert event.id == fake.events[0]["id"]
            fake.stop()
            tg.cancel_scope.cancel()
        spill.close()

    run(main)


def test_idempotency_cache_keeps_only_requests_in_flight_in_memory() -> None:
    async def main() -> None:
        spill = Spill()
        async with anyio.create_task_group() as tg:
            fake = spilled_fake(tg, spill)
            client = fake.client()
            first = [await create(client, f"key-{n}") for n in range(PURCHASES)]
            keys = fake._server.idempotency_keys
            assert len(keys._entries) == 0  # every outcome is on disk
            assert len(keys) == PURCHASES
            again = await create(client, "key-7")  # replayed from disk
            assert again.id == first[7].id and len(fake.sessions) == PURCHASES
            assert again.last_response.headers["Idempotent-Replayed"] == "true"
            with pytest.raises(stripe.IdempotencyError):
                await client.v1.checkout.sessions.create_async(
                    session_params(client_reference_id="other"), {"idempotency_key": "key-7"}
                )
            await anyio.sleep(24 * 3600.0)  # keys expire after 24 h, on disk too
            fresh = await create(client, "key-7")
            assert fresh.id != first[7].id
            fake.stop()
            tg.cancel_scope.cancel()
        spill.close()

    run(main)


def test_expiry_heap_drops_closed_sessions() -> None:
    async def main() -> None:
        async with anyio.create_task_group() as tg:
            fake = make_fake(tg)
            client = fake.client()
            keep = await create(client, "keep")  # stays open: the sweeper keeps running
            for n in range(300):
                session = await create(client, f"k{n}")
                await fake.customer_pay(session.id, "card")
            assert len(fake._sweeper._heap) <= 2 * 1 + 64 + 1
            assert fake.sessions[keep.id].status == "open"
            await anyio.sleep(24 * 3600.0 + 1)
            assert fake.sessions[keep.id].status == "expired"
            fake.stop()
            tg.cancel_scope.cancel()

    run(main)


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"a": [], "b": []},
        {"z": [{"k": [1, {"x": None}], "s": "é"}], "a": [{}, [], 2.5, {"n": {"m": []}}]},
    ],
)
def test_streamed_json_is_byte_identical(tmp_path: Path, data: dict[str, Any]) -> None:
    _write_json(tmp_path / "whole.json", data)
    write_json_lists(
        tmp_path / "streamed.json", {k: (lambda v=v: iter(v)) for k, v in data.items()}
    )
    assert (tmp_path / "streamed.json").read_bytes() == (tmp_path / "whole.json").read_bytes()


def test_run_files_and_result_match_an_in_memory_run(tmp_path: Path) -> None:
    """The streamed final state and ledgers equal the ones built in memory, and the result
    reads them from the run's files only when asked."""
    scenario = purchases_scenario(60)
    on_disk = simulate(scenario, 3, "reference", tmp_path)
    in_memory = simulate(scenario, 3, "reference", None)
    assert on_disk.history_sha256 == in_memory.history_sha256
    assert on_disk._final_state is None and on_disk._ledgers is None
    assert on_disk.final_state == json.loads(json.dumps(in_memory.final_state, default=str))
    assert on_disk.ledgers == json.loads(json.dumps(in_memory.ledgers, default=str))
    assert len(on_disk.ledgers["sessions"]) == on_disk.counts["sessions"]
    assert not list(Path(tmp_path).glob("*.sqlite3"))  # the spill leaves nothing behind


def test_spilled_harness_ledgers_read_back_as_lists() -> None:
    async def main() -> None:
        spill = Spill()
        logs: list[list[tuple[str, dict[str, Any]]]] = [[], []]
        emails = [
            FakeEmail(record=lambda t, **f: logs[0].append((t, f))),
            FakeEmail(record=lambda t, **f: logs[1].append((t, f))),
        ]
        grants = [RecordingFulfilment(), RecordingFulfilment()]
        emails[0].spill_to(spill)
        grants[0].spill_to(spill)
        for email, fulfilment in zip(emails, grants, strict=True):
            for n in range(30):
                key = f"receipt-{n % 20}"  # ten duplicates
                await email.send_receipt(purchase_id=f"p{n}", user_id="u", idempotency_key=key)
                await fulfilment.grant(
                    purchase_id=f"p{n}", user_id="u", program_id="prog", session_id=f"cs{n}"
                )
        assert isinstance(emails[0].delivered, RecordLog)
        assert logs[0] == logs[1]
        assert emails[0].delivered == emails[1].delivered and len(emails[0].delivered) == 20
        assert list(grants[0].grants) == grants[1].grants and len(grants[0].grants) == 30
        assert grants[0].grants[-1] == grants[1].grants[-1]
        spill.close()

    run(main)


def test_spill_tables_answer_as_plain_containers_across_their_write_batches() -> None:
    """Appends, settles and saves wait in memory and are written `_BATCH` at a time: every read
    (by index, by key, in order, counts, owners, deletes, prunes) must answer as a list or a dict
    would, whether the item is still waiting or already on disk."""
    import random

    from simulator.fake_stripe.objects import CheckoutSession
    from simulator.fake_stripe.spill import _BATCH, EventLog, IdempotencyTable

    rng = random.Random(3)
    n = _BATCH * 2 + 37
    spill = Spill()
    events: EventLog = spill.events
    model_events: list[dict[str, Any]] = []
    sessions: ObjectTable[CheckoutSession] = ObjectTable(spill.db, CheckoutSession)
    model_sessions: dict[str, CheckoutSession] = {}
    owners: dict[str, str] = {}
    keys: IdempotencyTable = spill.idempotency
    model_keys: dict[str, tuple[Any, ...]] = {}
    for i in range(n):
        event = {"id": f"evt_{i}", "n": i, "data": {"object": {"k": [i, None]}}}
        events.append(event)
        model_events.append(event)
        sid = f"cs_{i}"
        session = CheckoutSession(
            sid, "open", "unpaid", None, None, {"m": str(i)}, 9, 100, "usd", "u", 1
        )
        sessions[sid] = session
        model_sessions[sid] = session
        if rng.random() < 0.8:
            session.status = "complete"
            owners[sid] = f"pi_{i}"
            sessions.settle(sid, owner=owners[sid])
        if i and rng.random() < 0.3:  # change a settled one, waiting or written
            old = f"cs_{rng.randrange(i)}"
            if old in owners and old in model_sessions:
                changed = sessions[old]
                changed.payment_status = "paid"
                sessions.save(changed)
                model_sessions[old] = changed
        if i and rng.random() < 0.1:
            gone = f"cs_{rng.randrange(i)}"
            if gone in model_sessions:
                del sessions[gone]
                del model_sessions[gone]
        scope = f"key_{i % (n // 2)}"  # reused keys replace their outcome
        row = (f"fp{i}".encode(), float(i), 200, b"{}", {"Request-Id": f"req_{i}"})
        keys.put(scope, *row)
        model_keys[scope] = row
        if rng.random() < 0.05:
            dropped = f"key_{rng.randrange(n // 2)}"
            keys.delete(dropped)
            model_keys.pop(dropped, None)
        probe = rng.randrange(len(model_events))
        assert events[probe] == model_events[probe] and events[-1] == model_events[-1]
    assert len(events) == n and list(events) == model_events
    assert events.find("evt_5") == model_events[5] and events.find("evt_x") is None
    assert list(sessions) == list(model_sessions) and len(sessions) == len(model_sessions)
    for sid, session in model_sessions.items():
        assert sessions[sid] == session and sid in sessions
        assert sessions.owner(sid) == (owners.get(sid) if sid in owners else None)
    assert [s.id for s in sessions.values()] == list(model_sessions)
    for scope, (fingerprint, created, status, body, headers) in model_keys.items():
        assert keys.get(scope) == (fingerprint, created, status, body, headers)
    assert keys.get("key_missing") is None and len(keys) == len(model_keys)
    keys.prune(float(n // 2))
    assert len(keys) == sum(1 for row in model_keys.values() if row[1] > n // 2)
    spill.close()


def _arrivals_as_a_list(scenario: Any, rng: random.Random) -> list[Arrival]:
    """The arrival plan as it was planned when it was one list (the oracle)."""
    arrivals: list[Arrival] = []
    for n, part in enumerate(scenario.workload):
        prefix = f"u{n}_"
        if part.kind == "herd":
            arrivals += [
                Arrival(part.at, f"{prefix}{i}", part.program, part.class_rep)
                for i in range(part.count)
            ]
        elif part.kind == "double_click":
            arrivals += [
                Arrival(
                    part.at,
                    f"{prefix}{i}",
                    part.program,
                    part.class_rep,
                    part.clicks,
                    part.click_gap_s,
                )
                for i in range(part.count)
            ]
        else:
            t, i = part.at, 0
            while True:
                t += rng.expovariate(part.rate_per_s)
                if t >= part.at + part.duration_s or i >= part.count:
                    break
                arrivals.append(Arrival(round(t, 6), f"{prefix}{i}", part.program, part.class_rep))
                i += 1
    arrivals.sort(key=lambda a: a.at)
    return arrivals


def _ties() -> Any:
    """Parts that click at the same instants: ties go by part, then by click."""
    base = purchases_scenario(40)
    herd = WorkloadPart(kind="herd", program="prog_1", count=3, at=5, class_rep=True)
    clicks = WorkloadPart(kind="double_click", program="prog_1", count=2, at=5.0, clicks=2)
    steady = base.workload[0]
    return dataclasses.replace(base, name="ties", workload=(steady, clicks, herd, clicks, steady))


@pytest.mark.parametrize(
    "scenario",
    [
        *(load_scenario(p) for p in sorted(Path("scenarios").glob("*/*.toml"))),
        purchases_scenario(3000),
        _ties(),
    ],
    ids=lambda s: s.name,
)
def test_the_arrival_plan_is_made_as_it_goes_and_as_before(scenario: Any) -> None:
    """The same arrivals, values and types, in the same order, leaving the stream in the same
    state; one at a time, not a list of all."""
    planned = plan_arrivals(scenario, lazy_rng := random.Random(7))
    assert not isinstance(planned, list | tuple)
    expected = _arrivals_as_a_list(scenario, oracle_rng := random.Random(7))
    got = list(planned)
    assert [repr(a) for a in got] == [repr(a) for a in expected]
    assert lazy_rng.random() == oracle_rng.random()
