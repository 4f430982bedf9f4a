"""Client operations: who clicks "buy" when, and what each customer then does on Checkout.

`plan_arrivals` is a pure function of the scenario and the workload stream, so the same seed
always plans the same clicks. `Clients` performs them through the load balancer and records each
operation as invoke, then ok / fail / info (outcome unknown), as Jepsen histories do.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import trio

from reference_impl.errors import PurchaseError, UpstreamError
from reference_impl.ports import Engine, PurchaseResult
from simulator import tasks
from simulator.clock import SimClock
from simulator.requests import request_scope
from simulator.scenario import CustomerMix, Scenario
from simulator.topology import Cluster, InstanceCrashed, InstanceDown

ACTIONS = (
    "pay",
    "decline_then_pay",
    "decline",
    "async_success",
    "async_failure",
    "abandon",
    "cancel",
    "pay_after_cancel",
)
PAY_FLOWS = {
    "pay": "card",
    "decline_then_pay": "decline_then_card",
    "decline": "decline",
    "async_success": "async_success",
    "async_failure": "async_failure",
    "pay_after_cancel": "card",
}


@dataclass(frozen=True)
class Arrival:
    at: float
    user_id: str
    program_id: str
    class_rep: bool
    clicks: int = 1


def plan_arrivals(scenario: Scenario, rng: random.Random) -> list[Arrival]:
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
                Arrival(part.at, f"{prefix}{i}", part.program, part.class_rep, part.clicks)
                for i in range(part.count)
            ]
        elif part.kind == "steady":
            t, i = part.at, 0
            while True:
                t += rng.expovariate(part.rate_per_s)
                if t >= part.at + part.duration_s or i >= part.count:
                    break
                arrivals.append(Arrival(round(t, 6), f"{prefix}{i}", part.program, part.class_rep))
                i += 1
        else:
            raise ValueError(f"unknown workload kind {part.kind!r}")
    arrivals.sort(key=lambda a: a.at)
    return arrivals


def choose_action(mix: CustomerMix, rng: random.Random) -> str:
    weights = [getattr(mix, a) for a in ACTIONS]
    return rng.choices(ACTIONS, weights=weights)[0]


class Clients:
    def __init__(
        self,
        scenario: Scenario,
        cluster: Cluster,
        fake_stripe: Any,
        record: Callable[..., Any],
        customer_rng: random.Random,
        redirects: bool,
        clock: SimClock,
    ) -> None:
        self.clock = clock
        self.scenario = scenario
        self.cluster = cluster
        self.stripe = fake_stripe
        self.record = record
        self.rng = customer_rng
        self.redirects = redirects and scenario.customers.redirect
        self.counts: dict[str, int] = {"ok": 0, "fail": 0, "info": 0}
        self._op_ids = 0

    async def run(
        self,
        arrivals: list[Arrival],
        preloaded: list[tuple[Arrival, PurchaseResult]] = (),  # type: ignore[assignment]
    ) -> None:
        async with tasks.open_nursery() as tg:
            for arrival, purchase in preloaded:
                tg.start_soon(self._returning_customer, arrival, purchase)
            for arrival in arrivals:
                await self.clock.sleep_until(arrival.at)
                tg.start_soon(self._visit, arrival)

    async def _visit(self, arrival: Arrival) -> None:
        """One user: `clicks` concurrent creates, then acts on the checkout page the browser shows."""
        results: list[PurchaseResult | None] = [None] * arrival.clicks

        async def click(i: int) -> None:
            results[i] = await self.create(arrival)

        async with tasks.open_nursery() as tg:
            for i in range(arrival.clicks):
                tg.start_soon(click, i)
        shown = next((r for r in reversed(results) if r is not None), None)
        if shown is not None:
            await self._customer(arrival, shown)

    async def _returning_customer(self, arrival: Arrival, purchase: PurchaseResult) -> None:
        """A customer whose checkout page was opened before the run (a preloaded purchase)."""
        await self.clock.sleep_until(arrival.at)
        await self._customer(arrival, purchase)

    async def _customer(self, arrival: Arrival, purchase: PurchaseResult) -> None:
        action = choose_action(self.scenario.customers, self.rng)
        low, high = self.scenario.customers.think_time_s
        await trio.sleep(self.rng.uniform(low, high))
        self.record(
            "customer.action",
            user_id=arrival.user_id,
            purchase_id=purchase.purchase_id,
            session_id=purchase.session_id,
            action=action,
        )
        if action == "abandon":
            return
        if action == "cancel":
            await self.cancel(arrival.user_id, purchase.purchase_id)
            return
        if action == "pay_after_cancel":
            # the cancel in one tab races the payment in the other, in either order
            offset = self.rng.uniform(-1.0, 1.0)
            async with tasks.open_nursery() as tg:
                tg.start_soon(
                    self._after,
                    max(0.0, offset),
                    self.cancel,
                    arrival.user_id,
                    purchase.purchase_id,
                )
                tg.start_soon(
                    self._after, max(0.0, -offset), self._pay, purchase, PAY_FLOWS[action]
                )
            return
        await self._pay(purchase, PAY_FLOWS[action])

    async def _after(self, delay: float, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        await trio.sleep(delay)
        await fn(*args)

    async def _pay(self, purchase: PurchaseResult, flow: str) -> None:
        paid = await self.stripe.customer_pay(purchase.session_id, flow=flow)
        self.record("customer.pay", session_id=purchase.session_id, flow=flow, accepted=paid)
        if paid and self.redirects and flow in ("card", "decline_then_card"):
            await self.operation(
                "redirect",
                lambda e: e.handle_success_redirect(purchase.session_id),  # type: ignore[attr-defined]
                session_id=purchase.session_id,
            )

    # ---- operations as Jepsen records them

    async def create(self, arrival: Arrival) -> PurchaseResult | None:
        result = await self.operation(
            "create",
            lambda e: e.create_purchase(arrival.user_id, arrival.program_id, arrival.class_rep),
            user_id=arrival.user_id,
            program_id=arrival.program_id,
            class_rep=arrival.class_rep,
        )
        return result if isinstance(result, PurchaseResult) else None

    async def cancel(self, user_id: str, purchase_id: str) -> None:
        await self.operation(
            "cancel",
            lambda e: e.cancel_purchase(user_id, purchase_id),
            user_id=user_id,
            purchase_id=purchase_id,
        )

    async def operation(
        self, op: str, fn: Callable[[Engine], Awaitable[Any]], **fields: Any
    ) -> Any:
        self._op_ids += 1
        op_id = self._op_ids
        self.record("op.invoke", op_id=op_id, op=op, **fields)
        with request_scope(f"op{op_id}"):
            outcome, detail, value = await _perform(self.cluster, fn)
        self.counts[outcome] += 1
        self.record(f"op.{outcome}", op_id=op_id, op=op, **detail)
        return value


async def _perform(
    cluster: Cluster, fn: Callable[[Engine], Awaitable[Any]]
) -> tuple[str, dict[str, Any], Any]:
    try:
        instance, value = await cluster.call(fn)
    except InstanceDown as exc:
        return "fail", {"error": "instance_down", "message": str(exc)}, None
    except InstanceCrashed as exc:
        return "info", {"error": "crashed", "message": str(exc)}, None
    except UpstreamError as exc:
        outcome = "fail" if exc.outcome_known else "info"
        return outcome, {"error": exc.code, "http": exc.http_status, "message": str(exc)}, None
    except PurchaseError as exc:
        return "fail", {"error": exc.code, "http": exc.http_status, "message": str(exc)}, None
    except Exception as exc:  # an engine bug is an HTTP 500: the outcome is unknown
        return (
            "info",
            {"error": "internal", "http": 500, "message": f"{type(exc).__name__}: {exc}"},
            None,
        )
    detail: dict[str, Any] = {"instance": instance}
    if isinstance(value, PurchaseResult):
        detail.update(
            purchase_id=value.purchase_id, session_id=value.session_id, reused=value.reused
        )
    return "ok", detail, value
