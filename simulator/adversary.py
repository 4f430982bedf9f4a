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
  checkers it must never complete a purchase and must be refunded or kept for a human;
- a success-page probe: the page the customer's browser lands on, opened with a `session_id`
  that is no Checkout Session's, under an `adversary.attack` request (nothing may change,
  nothing may raise);
- a foreign cancel: the attacker, as its own customer, cancels a purchase id guessed from its
  own (ids are sequential), an ordinary `cancel` operation (`only_owner_cancels`).
At the end of its window the attacker pays its own open sessions for real: a legitimate payment
must still work after every hostile input.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from simulator.attacks import (
    ATTACK_REQUEST,
    NOT_HONOURED,
    PROBE_REQUEST,
    REFUSE,
    Forger,
    paid_completion,
)
from simulator.clock import SimClock
from simulator.probes import post_webhook
from simulator.requests import request_scope
from simulator.scenario import ATTACKS, AdversarySettings
from simulator.topology import Cluster, InstanceCrashed, InstanceDown

FOREIGN_VARIANTS = ("underpaid", "other_currency", "other_mode", "full_price")
#: session ids a success page may be opened with that are no Checkout Session's
SUCCESS_PAGE_IDS: dict[str, Callable[[int], str]] = {
    "empty": lambda n: "",
    "unexpanded_template": lambda n: "{CHECKOUT_SESSION_ID}",
    "payment_intent_id": lambda n: f"pi_adv_{n}",
    "path": lambda n: f"cs_adv_{n}/../../v1/refunds",
    "huge": lambda n: "cs_" + "x" * 5000,
    "unknown_session": lambda n: f"cs_adv_unknown_{n}",
}
_TRAILING_NUMBER = re.compile(r"^(.*?)(\d+)$")


@dataclass
class _Target:
    purchase_id: str
    session_id: str
    amount: int
    user_id: str = ""


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
            elif family == "success_page_probes":
                await self._success_page_probe()
            elif family == "foreign_cancels":
                await self._foreign_cancel()
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
                self.targets.append(
                    _Target(result.purchase_id, result.session_id, self.price, user)
                )
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
        sign = self.forger.header_now if forgery.signed_now else None
        status = await post_webhook(
            self.cluster, request, forgery.payload, forgery.header, sign=sign
        )
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

    # ---- the customer-facing pages

    async def _success_page_probe(self) -> None:
        variant = self.rng.choice(sorted(SUCCESS_PAGE_IDS))
        session_id = SUCCESS_PAGE_IDS[variant](self._n)
        request = f"{ATTACK_REQUEST}{self._n}"
        with request_scope(request):
            try:
                await self.cluster.call(lambda e: _open_success_page(e, session_id))
                status: int | str = 200
            except (InstanceDown, InstanceCrashed):
                status = "unreachable"
            except Exception as exc:  # escaped the engine: no_engine_exception has it
                status = f"error: {type(exc).__name__}"
        self.record(
            "adversary.attack",
            request=request,
            family="success_page_probes",
            variant=variant,
            expect=NOT_HONOURED,
            purchase_id=None,
            session_id=None,
            status=status,
        )

    async def _foreign_cancel(self) -> None:
        """Cancel a purchase id guessed from one of the attacker's own: most are someone
        else's, some exist nobody."""
        target = await self._target()
        if target is None:
            return
        user = target.user_id
        own = {t.purchase_id for t in self.targets}
        guess = _neighbour(target.purchase_id, self.rng.choice((-3, -2, -1, 1, 2, 3)))
        if guess is None or guess in own:
            return
        self.record(
            "adversary.attack",
            request=None,
            family="foreign_cancels",
            variant="guessed_id",
            expect=NOT_HONOURED,
            purchase_id=guess,
            session_id=None,
            status="sent",
        )
        await self.clients.cancel(user, guess)


async def _open_success_page(engine: Any, session_id: str) -> None:
    handler = getattr(engine, "handle_success_redirect", None)
    if handler is not None:  # an engine without the page has nothing to probe
        await handler(session_id)


def _neighbour(purchase_id: str, offset: int) -> str | None:
    """`pur_i0g1x000007`, 2 -> `pur_i0g1x000009` (the same width); None below zero."""
    match = _TRAILING_NUMBER.match(purchase_id)
    if match is None:
        return None
    head, digits = match.groups()
    number = int(digits) + offset
    return f"{head}{number:0{len(digits)}d}" if number >= 0 else None


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
