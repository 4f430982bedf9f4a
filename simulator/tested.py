"""What a run put the engine through, and what it left out, with the reason for each.

A race the harness silently skips (an engine without `handle_success_redirect` gets no
success-page race) is a hole in the verdict, so every run's summary, terminal lines and report
say which customer behaviours, races and faults were on or off, and why.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from html import escape
from typing import Any

from simulator.scenario import Scenario


@dataclass(frozen=True)
class Behaviour:
    name: str
    on: bool
    why: str


def offers_success_page(engine: object) -> bool:
    """Does this engine implement the optional success page (`ports.SuccessRedirect`)?

    Asked of the engine a factory built, never of the factory: a `module:factory` function has
    no such attribute even when the engine it returns has the method."""
    return callable(getattr(engine, "handle_success_redirect", None))


def _weight(scenario: Scenario, *names: str) -> float:
    return sum(getattr(scenario.customers, n) for n in names)


def _share(scenario: Scenario, *names: str) -> str:
    mix = scenario.customers
    from simulator.workload import ACTIONS

    total = sum(getattr(mix, a) for a in ACTIONS)
    return f"{100.0 * _weight(scenario, *names) / total:.0f} % of customers"


def behaviours(scenario: Scenario, redirect_capable: bool) -> list[Behaviour]:
    """On/off with the reason, from the scenario and what the engine implements."""
    mix = scenario.customers
    out: list[Behaviour] = []
    buying = any(part.count > 0 for part in scenario.workload) or bool(scenario.preload)

    def add(name: str, on: bool, yes: str, no: str) -> None:
        out.append(Behaviour(name, on, yes if on else no))

    card = _weight(scenario, "pay", "decline_then_pay", "pay_after_cancel", *RETURNING_CARD)
    delayed = _weight(scenario, "async_success", "async_failure", "debit_then_buy_again")
    if not redirect_capable:
        add("success-page race", False, "", "the engine has no handle_success_redirect")
    elif not mix.redirect:
        add("success-page race", False, "", "customers.redirect = false")
    else:
        add(
            "success-page race",
            card > 0 and buying,
            f"the success page races the webhook for {_share(scenario, 'pay', 'decline_then_pay', 'pay_after_cancel', *RETURNING_CARD)} (card payers)",
            "no customer pays by card",
        )
    every = redirect_capable and mix.redirect and mix.redirect_every_method
    add(
        "success page for an unpaid (delayed-method) session",
        every and delayed > 0 and buying,
        "delayed-method payers open the success page while the session is `unpaid`, and again once it settles",
        "the engine has no handle_success_redirect"
        if not redirect_capable
        else "customers.redirect_every_method = false"
        if not mix.redirect_every_method
        else "no customer pays with a delayed method",
    )
    low, high = mix.settle_after_s
    add(
        "delayed payment methods",
        delayed > 0 and buying,
        f"{_share(scenario, 'async_success', 'async_failure')} pay by bank debit, settling "
        f"{low:g}-{high:g} s later (refused where the session offers only cards)",
        "customers.async_success and async_failure are 0",
    )
    ttl = scenario.engine_config.session_ttl
    add(
        "think times past session expiry",
        mix.late_share > 0 and mix.late_think_s[1] >= ttl,
        f"{100 * mix.late_share:.0f} % of customers think {mix.late_think_s[0]:g}-"
        f"{mix.late_think_s[1]:g} s (sessions expire after {ttl:g} s)",
        f"every customer acts within {max(mix.think_time_s[1], mix.late_think_s[1] if mix.late_share else 0):g} s; sessions expire after {ttl:g} s",
    )
    returning = _weight(scenario, *RETURNING_CARD)
    add(
        "customers who come back (Buy again, old tab, second tab, cancel then pay)",
        returning > 0 and buying,
        f"{_share(scenario, *RETURNING_CARD)} come back {mix.return_after_s[0]:g}-"
        f"{mix.return_after_s[1]:g} s later",
        "customers.buy_again, buy_again_old_tab, second_tab, cancel_then_old_tab, "
        "debit_then_buy_again and pay_then_buy_again are 0",
    )
    add(
        "cancel racing a payment in another tab",
        mix.pay_after_cancel > 0 and buying,
        f"{_share(scenario, 'pay_after_cancel')}",
        "customers.pay_after_cancel is 0",
    )
    kinds = sorted({f.kind for f in scenario.faults})
    add(
        "faults",
        bool(kinds),
        ", ".join(kinds)
        + (" (swarm: each seed switches each kind on or off)" if scenario.swarm else ""),
        "the scenario schedules none",
    )
    return out


RETURNING_CARD = (
    "buy_again",
    "buy_again_old_tab",
    "second_tab",
    "cancel_then_old_tab",
    "debit_then_buy_again",
    "pay_then_buy_again",
)


def tested_summary(scenario: Scenario, redirect_capable: bool) -> list[dict[str, Any]]:
    return [asdict(b) for b in behaviours(scenario, redirect_capable)]


def tested_lines(summary: dict[str, Any]) -> list[str]:
    """Terminal lines: what was left out (what was on is in the report)."""
    return [f"  off: {b['name']} — {b['why']}" for b in summary.get("tested") or [] if not b["on"]]


def tested_section(summary: Any) -> str:
    rows = [
        f"<tr><td>{escape(b['name'])}</td><td>{'on' if b['on'] else '<b>off</b>'}</td>"
        f"<td>{escape(b['why'])}</td></tr>"
        for b in summary.get("tested") or []
    ]
    if not rows:
        return ""
    return (
        "<h2>What was tested</h2><p>Behaviours and races this run put the engine through, "
        "and those it did not, with the reason.</p><table><tr><th>behaviour</th><th></th>"
        "<th>why</th></tr>" + "".join(rows) + "</table>"
    )
