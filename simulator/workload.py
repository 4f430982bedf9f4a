"""Client operations: who clicks "buy" when, and what each customer then does on Checkout.

`plan_arrivals` is a pure function of the scenario and the workload stream, so the same seed
always plans the same clicks. What happens over the rest of a payment's life (late think times,
customers who come back hours later, delayed methods that settle over days, the success page for
every method) draws from its own `customer_timeline` stream, and only when the scenario turns it
on, so scenarios without it keep their histories. `Clients` performs them through the load balancer and records each
operation as invoke, then ok / fail / info (outcome unknown), as Jepsen histories do.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from array import array
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from reference_impl.errors import PurchaseError, UpstreamError
from reference_impl.ports import Engine, PendingPurchasesPage, PurchaseResult
from simulator import tasks, virtual_time
from simulator.clock import SimClock
from simulator.fake_stripe.customer import ASYNC_FLOWS
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
    # appended with weight 0 by default: `rng.choices` then draws exactly as before
    "buy_again",
    "buy_again_old_tab",
    "second_tab",
    "cancel_then_old_tab",
    "debit_then_buy_again",
    "pay_then_buy_again",
)
#: actions of a customer who leaves and comes back (`CustomerMix.return_after_s` later)
RETURNING = (
    "buy_again",
    "buy_again_old_tab",
    "second_tab",
    "cancel_then_old_tab",
    "debit_then_buy_again",
    "pay_then_buy_again",
)
PAY_FLOWS = {
    "pay": "card",
    "decline_then_pay": "decline_then_card",
    "decline": "decline",
    "async_success": "async_success",
    "async_failure": "async_failure",
    "pay_after_cancel": "card",
}
#: flows whose session completes paid at once (the success page always follows them)
CARD_FLOWS = ("card", "decline_then_card")


@dataclass(frozen=True)
class Arrival:
    at: float
    user_id: str
    program_id: str
    class_rep: bool
    clicks: int = 1
    click_gap_s: float = 0.0  # between one user's clicks: 0 is all at once


def plan_arrivals(scenario: Scenario, rng: random.Random) -> Iterator[Arrival]:
    """Every arrival of the scenario in time order (ties: workload part order, then click order).

    The random draws all happen here, part by part, as a list would take them; what is kept is
    each steady part's times as 8-byte floats, and each Arrival is made when its turn comes, so
    a run of 100,000 purchases does not hold 100,000 Arrivals (about 150 bytes each with their
    user ids) from start to end. The parts' times are each sorted and `heapq.merge` is stable,
    so the order is that of a stable sort of them all.
    """
    parts: list[Iterator[Arrival]] = []
    for n, part in enumerate(scenario.workload):
        times: Iterable[float]
        gap = part.click_gap_s if part.kind == "double_click" else 0.0
        if part.kind in ("herd", "double_click"):
            clicks = part.clicks if part.kind == "double_click" else 1
            times = itertools.repeat(part.at, part.count)  # `at` as written (an int stays one)
        elif part.kind == "steady":
            drawn, t = array("d"), part.at
            while True:
                t += rng.expovariate(part.rate_per_s)
                if t >= part.at + part.duration_s or len(drawn) >= part.count:
                    break
                drawn.append(round(t, 6))
            times, clicks = drawn, 1
        else:
            raise ValueError(f"unknown workload kind {part.kind!r}")
        parts.append(_arrivals(f"u{n}_", part.program, part.class_rep, clicks, gap, times))
    return heapq.merge(*parts, key=_at)


def _arrivals(
    prefix: str, program: str, class_rep: bool, clicks: int, gap: float, times: Iterable[float]
) -> Iterator[Arrival]:
    for i, at in enumerate(times):
        yield Arrival(at, f"{prefix}{i}", program, class_rep, clicks, gap)


def _at(arrival: Arrival) -> float:
    return arrival.at


def choose_action(mix: CustomerMix, rng: random.Random) -> str:
    weights = [getattr(mix, a) for a in ACTIONS]
    return rng.choices(ACTIONS, weights=weights)[0]


def log_uniform(rng: random.Random, low: float, high: float) -> float:
    """A long-tailed draw: as likely between 1 and 10 minutes as between 1 and 10 hours."""
    if low == high:
        return low
    if low <= 0:
        return rng.uniform(low, high)
    return math.exp(rng.uniform(math.log(low), math.log(high)))


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
        timeline_rng: random.Random | None = None,
        pending_page_rng: random.Random | None = None,
    ) -> None:
        self.clock = clock
        #: its own stream, so switching the page on leaves every other draw as it was
        self.pending_page_rng = pending_page_rng or random.Random(0)
        self.scenario = scenario
        self.cluster = cluster
        self.stripe = fake_stripe
        self.record = record
        self.rng = customer_rng
        self.timeline = timeline_rng or random.Random(0)
        self.redirects = redirects and scenario.customers.redirect
        self.counts: dict[str, int] = {"ok": 0, "fail": 0, "info": 0}
        self._op_ids = 0

    async def run(
        self,
        arrivals: Iterable[Arrival],
        preloaded: list[tuple[Arrival, PurchaseResult]] = (),  # type: ignore[assignment]
    ) -> None:
        async with tasks.open_nursery() as tg:
            for arrival, purchase in preloaded:
                tg.start_soon(self._returning_customer, arrival, purchase)
            for arrival in arrivals:
                await self.clock.sleep_until(arrival.at)
                tg.start_soon(self._visit, arrival)

    async def _visit(self, arrival: Arrival) -> None:
        """One user: `clicks` creates, at once or `click_gap_s` apart (an impatient user clicking
        again while the page loads), then acts on the checkout page the browser shows."""
        results: list[PurchaseResult | None] = [None] * arrival.clicks

        async def click(i: int) -> None:
            results[i] = await self.create(arrival)

        if arrival.clicks == 1:  # one click needs no task of its own
            await click(0)
        else:
            async with tasks.open_nursery() as tg:
                for i in range(arrival.clicks):
                    if i and arrival.click_gap_s:  # no sleep (a checkpoint) when clicks are at once
                        await virtual_time.sleep(arrival.click_gap_s)
                    tg.start_soon(click, i)
        shown = next((r for r in reversed(results) if r is not None), None)
        if shown is not None:
            await self._customer(arrival, shown)

    async def _returning_customer(self, arrival: Arrival, purchase: PurchaseResult) -> None:
        """A customer whose checkout page was opened before the run (a preloaded purchase)."""
        await self.clock.sleep_until(arrival.at)
        await self._customer(arrival, purchase)

    async def _customer(self, arrival: Arrival, purchase: PurchaseResult) -> None:
        """Act on the Checkout page; then, maybe, come back to "my pending purchases"."""
        await self._act(arrival, purchase)
        mix = self.scenario.customers
        if mix.pending_page > 0 and self.pending_page_rng.random() < mix.pending_page:
            low, high = mix.pending_page_after_s
            await virtual_time.sleep(self.pending_page_rng.uniform(low, high))
            await self.pending_page(arrival.user_id)

    async def _act(self, arrival: Arrival, purchase: PurchaseResult) -> None:
        action = choose_action(self.scenario.customers, self.rng)
        await virtual_time.sleep(self._think_time())
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
            clicks = self.scenario.customers.cancel_clicks
            if clicks == 1:  # no nursery: its exit is a checkpoint, which would move histories
                await self.cancel(arrival.user_id, purchase.purchase_id)
                return
            async with tasks.open_nursery() as tg:  # a double click on Cancel
                for _ in range(clicks):
                    tg.start_soon(self.cancel, arrival.user_id, purchase.purchase_id)
            return
        if action in RETURNING:
            await self._come_back(arrival, purchase, action)
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

    def _think_time(self) -> float:
        """`think_time_s` (always drawn, as before); for a `late_share` of customers, replaced
        by a long-tailed draw from the timeline stream."""
        mix = self.scenario.customers
        low, high = mix.think_time_s
        think = self.rng.uniform(low, high)
        if mix.late_share > 0 and self.timeline.random() < mix.late_share:
            think = log_uniform(self.timeline, *mix.late_think_s)
        return think

    async def _come_back(self, arrival: Arrival, purchase: PurchaseResult, action: str) -> None:
        """Leaves, comes back `return_after_s` later: Buy again, the old tab, or both."""
        away = log_uniform(self.timeline, *self.scenario.customers.return_after_s)
        if action == "cancel_then_old_tab":
            await self.cancel(arrival.user_id, purchase.purchase_id)
        elif action == "pay_then_buy_again":
            await self._pay(purchase, "card")
        elif action == "debit_then_buy_again":
            async with tasks.open_nursery() as tg:  # the debit settles while the customer is away
                tg.start_soon(self._pay, purchase, "async_success")
                await virtual_time.sleep(away)
                await self._buy_again(arrival, purchase, action, pay=True)
            return
        await virtual_time.sleep(away)
        if action == "cancel_then_old_tab":
            self.record("customer.return", user_id=arrival.user_id, action=action)
            await self._pay(purchase, "card")
        elif action in ("buy_again", "pay_then_buy_again"):
            await self._buy_again(arrival, purchase, action, pay=True)
        elif action == "buy_again_old_tab":
            async with tasks.open_nursery() as tg:  # the old tab's payment lands 0-3 s later
                tg.start_soon(self._buy_again, arrival, purchase, action, False)
                tg.start_soon(
                    self._after, self.timeline.uniform(0.0, 3.0), self._pay, purchase, "card"
                )
        else:  # second_tab: Buy again in a new tab, pays in the old tab, then in the new one
            again = await self._buy_again(arrival, purchase, action, pay=False)
            await self._pay(purchase, "card")
            if again is not None:
                await self._pay(again, "card")

    async def _buy_again(
        self, arrival: Arrival, old: PurchaseResult, action: str, pay: bool
    ) -> PurchaseResult | None:
        again = await self.create(arrival)
        self.record(
            "customer.return",
            user_id=arrival.user_id,
            action=action,
            old_session_id=old.session_id,
            new_session_id=again.session_id if again else None,
        )
        if pay and again is not None:
            await self._pay(again, "card")
        return again

    async def _after(self, delay: float, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        await virtual_time.sleep(delay)
        await fn(*args)

    async def _pay(self, purchase: PurchaseResult, flow: str) -> None:
        mix = self.scenario.customers
        every = self.redirects and mix.redirect_every_method
        settle = log_uniform(self.timeline, *mix.settle_after_s) if flow in ASYNC_FLOWS else 0.0
        if every:
            async with tasks.open_nursery() as tg:

                def submitted() -> (
                    None
                ):  # Checkout sends a delayed-method payer to the success page
                    tg.start_soon(self._redirect, purchase)

                paid = await self.stripe.customer_pay(
                    purchase.session_id, flow=flow, settle_after_s=settle, on_submitted=submitted
                )
        else:  # no nursery: its exit is a checkpoint, which would move existing histories
            paid = await self.stripe.customer_pay(
                purchase.session_id, flow=flow, settle_after_s=settle
            )
        self.record("customer.pay", session_id=purchase.session_id, flow=flow, accepted=paid)
        if paid and self.redirects and (flow in CARD_FLOWS or every):
            # after a delayed method: back to the success page once the bank debit settled
            await self._redirect(purchase)

    async def _redirect(self, purchase: PurchaseResult) -> None:
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

    async def pending_page(self, user_id: str) -> None:
        await self.operation(
            "pending_page", lambda e: _open_pending_page(e, user_id), user_id=user_id
        )

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


async def _open_pending_page(engine: Engine, user_id: str) -> list[str] | None:
    """The page runs the engine's cleanups where it has them; elsewhere it changes nothing."""
    if isinstance(engine, PendingPurchasesPage):
        return await engine.list_pending_purchases(user_id)
    return None


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
    elif isinstance(value, list):
        detail["shown"] = value
    return "ok", detail, value
