"""The adversary: a hostile party that attacks the webhook endpoint as a nemesis would faults.

It is a customer too (`attackers` accounts buying non-class-rep seats), so it knows real
purchase ids, sessions and amounts, as an attacker would from their own checkout. Each attack,
at times and of families drawn from its own random stream (`adversary`: enabling it never
reshuffles the workload or the faults), is one of:
- a forgery (simulator/attacks.py) posted to the endpoint, its answer recorded with the outcome
  a safe engine must give: `probe.forged` (400, no write: `signature_enforced`) or
  `adversary.attack` (2xx and/or no purchase changed: `webhooks_acknowledged`,
  `payment_matches_purchase`);
- a foreign session: a real Checkout Session created at Stripe outside the engine, naming a
  purchase in `client_reference_id` or metadata, then paid (underpaid, other currency, other
  mode, full price). Its events are genuine and signed; `adversary.foreign_session` tells the
  checkers it must never complete a purchase and must be refunded or kept for a human.
At the end of its window the attacker pays its own open sessions for real: a legitimate payment
must still work after every hostile input.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from simulator.attacks import (
    ATTACK_REQUEST,
    PROBE_REQUEST,
    REFUSE,
    Forger,
    paid_completion,
)
from simulator.clock import SimClock
from simulator.probes import post_webhook
from simulator.scenario import ATTACKS, AdversarySettings
from simulator.topology import Cluster

FOREIGN_VARIANTS = ("underpaid", "other_currency", "other_mode", "full_price")


@dataclass
class _Target:
    purchase_id: str
    session_id: str
    amount: int


@dataclass
class Adversary:
    settings: AdversarySettings
    fake: Any  # FakeStripe
    cluster: Cluster
    clients: Any  # simulator.workload.Clients: the attacker buys like any customer
    rng: random.Random
    record: Callable[..., Any]
    clock: SimClock
    program_id: str
    price: int
    currency: str
    tolerance_s: float
    targets: list[_Target] = field(default_factory=list)
    _n: int = 0
    _buys: int = 0

    def __post_init__(self) -> None:
        self.forger = Forger(self.rng, self.fake.webhook_secret, self.tolerance_s, self.clock.now)

    async def run(self, window_end: float) -> None:
        s = self.settings
        end = max(s.start, window_end)
        times = sorted(self.rng.uniform(s.start, end) for _ in range(s.attacks))
        families = list(ATTACKS)
        weights = [getattr(s.weights, f) for f in families]
        for at in times:
            await self.clock.sleep_until(at)
            family = self.rng.choices(families, weights)[0]
            self._n += 1
            if family == "foreign_sessions":
                await self._foreign_session()
            else:
                await self._forge(family)
        await self._pay_own_sessions()

    # ---- the attacker as a customer

    async def _target(self) -> _Target | None:
        """One of the attacker's purchases: a new one while it has fewer than `attackers`."""
        if len(self.targets) < self.settings.attackers:
            self._buys += 1
            user = f"adv_user_{self._buys}"
            result = await self.clients.operation(
                "create",
                lambda e: e.create_purchase(user, self.program_id, False),
                user_id=user,
                program_id=self.program_id,
                class_rep=False,
            )
            if result is not None:
                self.targets.append(_Target(result.purchase_id, result.session_id, self.price))
        return self.rng.choice(self.targets) if self.targets else None

    async def _pay_own_sessions(self) -> None:
        for target in self.targets:
            paid = await self.fake.customer_pay(target.session_id, flow="card")
            self.record("customer.pay", session_id=target.session_id, flow="card", accepted=paid)

    # ---- forgeries

    async def _forge(self, family: str) -> None:
        target = await self._target()
        if target is not None:
            session = self.fake.sessions.get(target.session_id)
            base_session = session.to_json() if session is not None else None
        else:
            base_session = None
        if base_session is None:
            base_session = _made_up_session(self._n, self.price, self.currency)
        base = paid_completion(base_session, f"evt_adv_{self._n}", int(self.clock.now()))
        forgery = self.forger.build(family, base, self._n)
        refuse = forgery.expect == REFUSE
        request = f"{PROBE_REQUEST if refuse else ATTACK_REQUEST}{self._n}"
        status = await post_webhook(self.cluster, request, forgery.payload, forgery.header)
        if refuse:
            self.record(
                "probe.forged",
                probe=request,
                variant=f"adversary:{forgery.family}:{forgery.variant}",
                event_id=base["id"],
                session_id=forgery.session_id,
                status=status,
            )
        else:
            self.record(
                "adversary.attack",
                request=request,
                family=forgery.family,
                variant=forgery.variant,
                expect=forgery.expect,
                purchase_id=forgery.purchase_id,
                session_id=forgery.session_id,
                status=status,
            )

    # ---- foreign sessions

    async def _foreign_session(self) -> None:
        target = await self._target()
        purchase_id = target.purchase_id if target else f"pur_adv_none_{self._n}"
        variant = self.rng.choice(FOREIGN_VARIANTS)
        via = self.rng.choice(("client_reference_id", "metadata"))
        amount, currency, mode = self.price, self.currency, "payment"
        if variant == "underpaid":
            amount = self.rng.choice((1, max(1, self.price // 2), max(1, self.price - 1)))
        elif variant == "other_currency":
            currency = "eur" if self.currency != "eur" else "gbp"
        elif variant == "other_mode":
            mode = self.rng.choice(("subscription", "setup"))
        session = self.fake.foreign_session(
            amount_total=amount,
            currency=currency,
            mode=mode,
            client_reference_id=purchase_id if via == "client_reference_id" else None,
            metadata={"purchase_id": purchase_id},
            expires_at=int(self.clock.now()) + 3600,
        )
        self.record(
            "adversary.foreign_session",
            session_id=session.id,
            purchase_id=purchase_id,
            variant=variant,
            via=via,
            amount=amount,
            currency=currency,
            mode=mode,
        )
        await self.fake.customer_pay(session.id, flow="card")


def _made_up_session(n: int, amount: int, currency: str) -> dict[str, Any]:
    """A plausible session when the attacker could not buy (every instance down, busy)."""
    return {
        "id": f"cs_adv_none_{n}",
        "object": "checkout.session",
        "amount_total": amount,
        "client_reference_id": f"pur_adv_none_{n}",
        "currency": currency,
        "metadata": {"purchase_id": f"pur_adv_none_{n}"},
        "mode": "payment",
        "payment_intent": None,
        "payment_status": "unpaid",
        "status": "open",
    }
