"""Each mutant shows its bug in a direct run, and the same steps on the reference do not.

Every test runs one scenario function against both engines: `bug=True` for the mutant, where the
violation must show, `bug=False` for `ReferenceEngine`, where it must not (so each can fail).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import anyio
import pytest

from reference_impl import errors
from reference_impl.memory_locks import MemoryLockService
from reference_impl.ports import EngineConfig, EngineEnv
from reference_impl.reference_engine import ReferenceEngine
from reference_impl.schema import program_doc
from reference_impl.store import AsyncDatabase
from simulator import mutants
from simulator.attacks import paid_completion
from simulator.checkers import INVARIANTS as ALL_INVARIANTS
from simulator.engines import EXTRA, EXTRA_DESCRIPTIONS, resolve
from simulator.ids import SequentialIds
from tests.enginehelpers import World, make_env, run_virtual, world

USER = "user_1"
PROG = "prog_1"
INVARIANTS = set(ALL_INVARIANTS)

Scenario = Callable[[Any, bool], Awaitable[None]]


def both(mutant: str, scenario: Scenario) -> None:
    """Run `scenario(factory, bug)` on the mutant (bug shows) and on the reference (it does not)."""
    for factory, bug in ((mutants.MUTANTS[mutant].factory, True), (ReferenceEngine, False)):
        run_virtual(lambda f=factory, b=bug: scenario(f, b))


async def _count(w: World) -> int:
    return (await w.program(PROG))["class_rep_count"]


async def _seat_holders(w: World) -> int:
    """Class-rep purchases holding a seat, counted from the purchases (as the checkers do)."""
    return len(
        [p for p in await w.purchases(class_rep=True) if p["status"] in ("pending", "completed")]
    )


class Crash(BaseException):  # not Exception: a dying process is not a handler error
    """The process dies here (nothing after this point runs)."""


class _Interpose:
    """Store observer that runs `action` once, before the next `collection.op` call once armed."""

    def __init__(self, collection: str, op: str, action: Callable[[], Awaitable[None]]) -> None:
        self.target = (collection, op)
        self.action = action
        self.armed = False

    async def before(
        self, collection: str, op: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]
    ) -> None:
        await anyio.lowlevel.checkpoint()
        if self.armed and (collection, op) == self.target:
            self.armed = False
            await self.action()

    def after(self, *args: Any) -> None:
        return None


def _observed(factory: Any, observer: _Interpose) -> Callable[[EngineEnv], Any]:
    def build(env: EngineEnv) -> Any:
        env.store = AsyncDatabase(env.store.sync, observer)
        return factory(env)

    return build


async def _second_instance(w: World, factory: Any) -> Any:
    """Another instance of the deployment: same store and Stripe, its own in-memory locks."""
    env = await make_env(
        stripe_client=w.env.stripe,
        store=w.env.store,
        locks=MemoryLockService(),
        clock=w.env.clock,
        ids=SequentialIds("b"),
        fulfilment=w.fulfilment,
        email=w.email,
        instance="i1",
    )
    return factory(env)


# ---------------------------------------------------------------- the catalogue


def test_catalogue_names_invariants_and_registers_engines() -> None:
    assert len(mutants.MUTANTS) == 63
    for name, mutant in mutants.MUTANTS.items():
        assert mutant.name == name and mutant.description
        assert mutant.violates and set(mutant.violates) <= INVARIANTS, name
        assert issubclass(mutant.factory, ReferenceEngine)  # type: ignore[arg-type]
        assert resolve(f"mutant:{name}") is mutant.factory
        assert EXTRA_DESCRIPTIONS[f"mutant:{name}"] == mutant.description
    mutants.register()
    assert sum(key.startswith("mutant:") for key in EXTRA) == 63


# ---------------------------------------------------------------- create


def test_no_create_lock_two_clicks_make_two_pending_purchases() -> None:
    async def scenario(factory: Any, bug: bool) -> None:
        async with world(factory, programs=[program_doc(PROG, class_rep_limit=5)]) as w:
            async with anyio.create_task_group() as tg:
                for _ in range(2):
                    tg.start_soon(w.engine.create_purchase, USER, PROG, True)
            pending = await w.purchases(user_id=USER, status="pending")
            assert len(pending) == (2 if bug else 1)
            assert await _count(w) == len(pending)

    both("no-create-lock", scenario)


def test_short_lock_timeout_proceeds_while_a_slow_holder_works() -> None:
    config = EngineConfig(purchase_lock_timeout=mutants.SHORT_LOCK_TIMEOUT_S)

    async def scenario(factory: Any, bug: bool) -> None:
        slow = _Interpose("programs", "update_one", lambda: anyio.sleep(1.0))
        programs = [program_doc(PROG, class_rep_limit=5)]
        async with world(_observed(factory, slow), programs=programs, config=config) as w:
            busy: list[errors.Busy] = []

            async def click() -> None:
                try:
                    await w.engine.create_purchase(USER, PROG, class_rep=True)
                except errors.Busy as exc:
                    busy.append(exc)

            slow.armed = True  # the holder stalls while reserving its seat
            async with anyio.create_task_group() as tg:
                tg.start_soon(click)
                await anyio.sleep(0.01)
                tg.start_soon(click)
            pending = await w.purchases(user_id=USER, status="pending")
            assert len(pending) == (2 if bug else 1)
            assert len(busy) == (0 if bug else 1)

    both("short-lock-timeout", scenario)


def test_check_then_act_counter_lets_a_herd_past_the_limit() -> None:
    async def scenario(factory: Any, bug: bool) -> None:
        async with world(factory) as w:  # one seat
            refused: list[str] = []

            async def buy(user: str) -> None:
                try:
                    await w.engine.create_purchase(user, PROG, class_rep=True)
                except errors.LimitReached:
                    refused.append(user)

            async with anyio.create_task_group() as tg:
                for i in range(5):
                    tg.start_soon(buy, f"user_{i}")
            held = await _seat_holders(w)
            if bug:
                assert held > 1 and await _count(w) > 1
            else:
                assert held == 1 and await _count(w) == 1 and len(refused) == 4

    both("check-then-act-counter", scenario)


def test_no_compensation_leaks_the_seat_on_a_stripe_failure_even_after_reconcile() -> None:
    config = EngineConfig(reconcile_grace=600.0)

    async def scenario(factory: Any, bug: bool) -> None:
        async with world(factory, config=config) as w:
            w.fake.faults.error_5xx_probability = 1.0
            with pytest.raises(errors.UpstreamError) as info:
                await w.engine.create_purchase(USER, PROG, class_rep=True)
            assert info.value.outcome_known
            assert [p["status"] for p in await w.purchases()] == ["failed"]
            await anyio.sleep(601)
            await w.engine.reconcile()
            assert await _seat_holders(w) == 0
            assert await _count(w) == (1 if bug else 0)

    both("no-compensation", scenario)


def test_orphan_session_gives_up_on_a_session_that_landed() -> None:
    config = EngineConfig(stripe_timeout=2.0)

    async def scenario(factory: Any, bug: bool) -> None:
        async with world(factory, config=config, max_network_retries=0) as w:
            w.fake.faults.latency_spike_probability = 1.0
            with pytest.raises(errors.UpstreamError) as info:
                await w.engine.create_purchase(USER, PROG, class_rep=True)
            assert not info.value.outcome_known
            await anyio.sleep(60)  # the request landed at Stripe meanwhile
            w.fake.faults.latency_spike_probability = 0.0
            await w.engine.create_purchase(USER, PROG, class_rep=True)
            referenced = {p["stripe_session_id"] for p in await w.purchases()}
            orphans = set(w.fake.sessions) - referenced
            assert len(orphans) == (1 if bug else 0)

    both("orphan-session", scenario)


# ---------------------------------------------------------------- webhooks


async def _paid_event(w: World, session_id: str) -> dict[str, Any]:
    await w.fake.customer_pay(session_id, flow="card")
    [event] = w.events("checkout.session.completed")
    return event


def test_no_transition_guard_fulfils_every_duplicate_delivery() -> None:
    async def scenario(factory: Any, bug: bool) -> None:
        async with world(factory) as w:
            result = await w.engine.create_purchase(USER, PROG, class_rep=True)
            event = await _paid_event(w, result.session_id)
            assert [await w.deliver(event) for _ in range(2)] == [200, 200]
            assert len(w.fulfilment.grants) == (2 if bug else 1)

    both("no-transition-guard", scenario)


def test_fulfil_before_commit_double_fulfils_concurrent_deliveries() -> None:
    async def scenario(factory: Any, bug: bool) -> None:
        async with world(factory) as w:
            result = await w.engine.create_purchase(USER, PROG, class_rep=True)
            event = await _paid_event(w, result.session_id)
            other = await _second_instance(w, factory)
            payload = w.fake.event_payload(event)
            async with anyio.create_task_group() as tg:
                for engine in (w.engine, other):
                    tg.start_soon(engine.handle_webhook, payload, w.fake.sign(payload))
            assert len(w.fulfilment.grants) == (2 if bug else 1)
            assert [p["status"] for p in await w.purchases()] == ["completed"]

    both("fulfil-before-commit", scenario)


def test_event_recorded_first_loses_the_payment_after_a_crash() -> None:
    async def crash() -> None:
        raise Crash("crash point before purchases.find_one_and_update")

    async def scenario(factory: Any, bug: bool) -> None:
        point = _Interpose("purchases", "find_one_and_update", crash)
        async with world(_observed(factory, point)) as w:
            result = await w.engine.create_purchase(USER, PROG, class_rep=True)
            event = await _paid_event(w, result.session_id)
            point.armed = True
            with pytest.raises(Crash):
                await w.deliver(event)
            assert await w.deliver(event) == 200  # Stripe's retry
            [p] = await w.purchases()
            assert w.fake.sessions[result.session_id].payment_status == "paid"
            assert p["status"] == ("pending" if bug else "completed")
            assert len(w.fulfilment.grants) == (0 if bug else 1)

    both("event-recorded-first", scenario)


def test_no_signature_check_accepts_a_forged_webhook() -> None:
    async def scenario(factory: Any, bug: bool) -> None:
        async with world(factory) as w:
            result = await w.engine.create_purchase(USER, PROG, class_rep=True)
            event = await _paid_event(w, result.session_id)
            payload = w.fake.event_payload(event)
            forged = w.fake.sign(payload, secret="whsec_attacker")
            assert await w.engine.handle_webhook(payload, forged) == (200 if bug else 400)
            assert len(w.fulfilment.grants) == (1 if bug else 0)

    both("no-signature-check", scenario)


def test_unpaid_fulfilment_fulfils_a_session_whose_money_never_came() -> None:
    async def scenario(factory: Any, bug: bool) -> None:
        async with world(factory) as w:
            result = await w.engine.create_purchase(USER, PROG, class_rep=True)
            await w.fake.customer_pay(result.session_id, flow="async_failure")
            [completed] = w.events("checkout.session.completed")
            assert completed["data"]["object"]["payment_status"] == "unpaid"
            assert await w.deliver(completed) == 200
            assert result.session_id not in w.fake.paid_session_ids()
            assert len(w.fulfilment.grants) == (1 if bug else 0)

    both("unpaid-fulfilment", scenario)


# ---------------------------------------------------------------- seats after checkout


def test_release_on_payment_failed_sells_the_seat_twice() -> None:
    async def scenario(factory: Any, bug: bool) -> None:
        async with world(factory) as w:  # one seat
            first = await w.engine.create_purchase(USER, PROG, class_rep=True)
            await w.fake.customer_pay(first.session_id, flow="decline")
            [declined] = w.events("payment_intent.payment_failed")
            assert [await w.deliver(declined) for _ in range(2)] == [200, 200]
            if bug:  # the seat was given back twice: a second buyer gets one
                await w.engine.create_purchase("user_2", PROG, class_rep=True)
            else:
                with pytest.raises(errors.LimitReached):
                    await w.engine.create_purchase("user_2", PROG, class_rep=True)
            await w.deliver(await _paid_event(w, first.session_id))  # the second card
            held = await _seat_holders(w)
            assert [p["status"] for p in await w.purchases(_id=first.purchase_id)] == ["completed"]
            assert held == (2 if bug else 1)  # over the limit of 1
            assert await _count(w) == 1 and (held > await _count(w)) == bug

    both("release-on-payment-failed", scenario)


def test_decrement_without_state_change_decrements_per_expiry_delivery() -> None:
    async def scenario(factory: Any, bug: bool) -> None:
        async with world(factory, config=EngineConfig(session_ttl=1800)) as w:
            await w.engine.create_purchase(USER, PROG, class_rep=True)
            await anyio.sleep(1801)
            [expired] = w.events("checkout.session.expired")
            assert [await w.deliver(expired) for _ in range(2)] == [200, 200]
            assert await _count(w) == (-1 if bug else 0)

    both("decrement-without-state-change", scenario)


def test_ignore_expired_keeps_the_seat_of_an_abandoned_checkout() -> None:
    config = EngineConfig(session_ttl=1800, reconcile_grace=600.0)

    async def scenario(factory: Any, bug: bool) -> None:
        async with world(factory, config=config) as w:
            first = await w.engine.create_purchase(USER, PROG, class_rep=True)
            await anyio.sleep(1900)
            assert w.fake.sessions[first.session_id].status == "expired"
            [expired] = w.events("checkout.session.expired")
            assert await w.deliver(expired) == 200
            await w.engine.reconcile()
            assert await _count(w) == (1 if bug else 0)
            [p] = await w.purchases()
            assert p["status"] == ("pending" if bug else "expired")
            if bug:
                with pytest.raises(errors.LimitReached):
                    await w.engine.create_purchase("user_2", PROG, class_rep=True)
            else:
                await w.engine.create_purchase("user_2", PROG, class_rep=True)

    both("ignore-expired", scenario)


def test_cancel_without_expire_completes_a_cancelled_purchase_past_the_limit() -> None:
    async def scenario(factory: Any, bug: bool) -> None:
        async with world(factory) as w:  # one seat
            first = await w.engine.create_purchase(USER, PROG, class_rep=True)
            await w.engine.cancel_purchase(USER, first.purchase_id)
            await w.engine.create_purchase("user_2", PROG, class_rep=True)  # the freed seat
            # the customer pays in the tab still open
            assert await w.fake.customer_pay(first.session_id, flow="card") == bug
            for event in w.events("checkout.session.completed"):
                assert await w.deliver(event) == 200
            [p] = await w.purchases(_id=first.purchase_id)
            assert p["status"] == ("completed" if bug else "cancelled")
            assert await _seat_holders(w) == (2 if bug else 1)  # over the limit of 1
            assert await _count(w) == 1

    both("cancel-without-expire", scenario)


# ---------------------------------------------------------------- hostile webhooks (issue 11)


async def _own_paid_completion(w: World) -> tuple[Any, dict[str, Any]]:
    """A pending purchase and a paid completion of its own session (the customer has not paid:
    Stripe has it open, so completing the purchase from this event is fulfilling unpaid)."""
    result = await w.engine.create_purchase(USER, PROG, class_rep=True)
    session = w.fake.sessions[result.session_id].to_json()
    return result, paid_completion(session, "evt_forged_1", int(w.env.clock.now()))


def _signed_body(w: World, event: dict[str, Any]) -> tuple[bytes, str]:
    payload = json.dumps(event).encode()
    return payload, w.fake.sign(payload)


async def _status(w: World) -> str:
    [p] = await w.purchases()
    return str(p["status"])


@pytest.mark.parametrize(
    ("mutant", "field", "value"),
    [
        ("skips-amount-check", "amount_total", 1),
        ("skips-currency-check", "currency", "eur"),
        ("skips-mode-check", "mode", "subscription"),
    ],
)
def test_payment_checks_refuse_a_completion_not_paid_in_full(
    mutant: str, field: str, value: Any
) -> None:
    async def scenario(factory: Any, bug: bool) -> None:
        async with world(factory) as w:
            _, event = await _own_paid_completion(w)
            event["data"]["object"][field] = value
            assert await w.engine.handle_webhook(*_signed_body(w, event)) == 200
            assert await _status(w) == ("completed" if bug else "pending")
            assert len(w.fulfilment.grants) == (1 if bug else 0)

    both(mutant, scenario)


def test_trusts_client_reference_completes_from_a_foreign_session() -> None:
    async def scenario(factory: Any, bug: bool) -> None:
        async with world(factory) as w:
            result = await w.engine.create_purchase(USER, PROG, class_rep=True)
            foreign = w.fake.foreign_session(
                amount_total=5000,
                currency="usd",
                mode="payment",
                client_reference_id=result.purchase_id,
                metadata={},
                expires_at=int(w.env.clock.now()) + 3600,
            )
            before = len(w.fake.events)
            await w.fake.customer_pay(foreign.id)
            for event in w.fake.events[before:]:
                assert await w.deliver(event) == 200
            assert await _status(w) == ("completed" if bug else "pending")
            assert [g.session_id for g in w.fulfilment.grants] == ([foreign.id] if bug else [])

    both("trusts-client-reference", scenario)


def test_reparses_header_lets_a_prepended_fresh_t_revive_a_stale_signature() -> None:
    async def scenario(factory: Any, bug: bool) -> None:
        async with world(factory) as w:
            result = await w.engine.create_purchase(USER, PROG, class_rep=True)
            await w.fake.customer_pay(result.session_id)
            [event] = w.events("checkout.session.completed")
            payload = w.fake.event_payload(event)
            now = int(w.env.clock.now())
            header = f" t={now}," + w.fake.sign(payload, timestamp=now - 86400)
            assert await w.engine.handle_webhook(payload, header) == (200 if bug else 400)
            assert await _status(w) == ("completed" if bug else "pending")

    both("reparses-header", scenario)


@pytest.mark.parametrize("mutant", ["no-shape-check", "unguarded-webhook"])
def test_shape_checks_refuse_a_signed_body_with_no_session_id(mutant: str) -> None:
    async def scenario(factory: Any, bug: bool) -> None:
        async with world(factory) as w:
            _, event = await _own_paid_completion(w)
            del event["data"]["object"]["id"]
            body = _signed_body(w, event)
            if bug and mutant == "unguarded-webhook":
                with pytest.raises(KeyError):
                    await w.engine.handle_webhook(*body)
            else:
                assert await w.engine.handle_webhook(*body) == (500 if bug else 400)
            assert await _status(w) == "pending"

    both(mutant, scenario)


def test_retries_unfinishable_fails_a_payment_for_no_purchase_for_three_days() -> None:
    async def scenario(factory: Any, bug: bool) -> None:
        async with world(factory) as w:
            _, event = await _own_paid_completion(w)
            obj = event["data"]["object"]
            obj.update(id="cs_ghost_1", client_reference_id="pur_ghost", metadata={})
            assert await w.engine.handle_webhook(*_signed_body(w, event)) == (500 if bug else 200)
            assert await _status(w) == "pending" and not w.fake.refunds

    both("retries-unfinishable", scenario)
