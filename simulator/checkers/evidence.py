"""What a run actually exercised, so a run that tested nothing cannot pass (vacuity).

A scenario names the hazards it is about (`expect`), and every fault it configures must have
visibly taken effect; a run missing any of them is reported as vacuous, not as a pass.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from simulator.side_effects import CRASH_REASON

#: evidence a scenario may list in `expect`, and the history lines that show it
EVIDENCE_KINDS = (
    "lock_wait",
    "lock_timeout",
    "duplicate_delivery",
    "concurrent_delivery",
    "limit_reached",
    "unknown_outcome",
    "crash",
    "payment",
)

#: fault kind -> (history entry type, predicate on that entry) showing the fault took effect
FAULT_EFFECTS: dict[str, tuple[str, Callable[[dict[str, Any]], bool]]] = {
    "stripe_latency": ("stripe.client_gone", lambda e: True),
    "stripe_errors": ("stripe.request", lambda e: e.get("fault") == "error_5xx"),
    "stripe_errors_after_execution": (
        "stripe.request",
        lambda e: e.get("fault") == "error_5xx_after_execution",
    ),
    "stripe_outage": ("stripe.request", lambda e: e.get("fault") == "outage"),
    # every call is slow while it is on, as every store call is under store_latency
    "stripe_slow_execution": ("fault.start", lambda e: e.get("kind") == "stripe_slow_execution"),
    "stripe_connection_errors": ("stripe.request", lambda e: e.get("fault") == "connection_error"),
    "stripe_lost_response": ("stripe.request", lambda e: e.get("fault") == "lost_response"),
    "stripe_rate_limit": ("stripe.request", lambda e: e.get("status") == 429),
    "email_outage": ("email.failed", lambda e: True),
    "store_latency": ("fault.start", lambda e: e.get("kind") == "store_latency"),
    "slow_handler": ("fault.slow", lambda e: True),
    "webhook_duplicates": ("webhook.attempt", lambda e: bool(e.get("duplicate"))),
    "webhook_reorder": ("fault.start", lambda e: e.get("kind") == "webhook_reorder"),
    "webhook_failures": ("fault.webhook_failure", lambda e: True),
    "crash": ("instance.crash", lambda e: not _at_side_effect(e)),
    "crash_before_side_effect": ("instance.crash", lambda e: _at_side_effect(e)),
    "pause": ("instance.pause", lambda e: True),
    "lease_pause": ("fault.lease_pause", lambda e: True),
    "redis_restart": ("redis.restart", lambda e: True),
    "redis_latency": ("redis.delay", lambda e: True),
}


def _at_side_effect(crash: dict[str, Any]) -> bool:
    """A crash the nemesis made before a grant or a receipt (Nemesis.before_side_effect)."""
    return str(crash.get("reason", "")).startswith(CRASH_REASON)


_BY_TYPE: dict[str, list[tuple[str, Callable[[dict[str, Any]], bool]]]] = {}
for _fault, (_type, _shows) in FAULT_EFFECTS.items():
    _BY_TYPE.setdefault(_type, []).append((_fault, _shows))


class Evidence:
    def __init__(self) -> None:
        self.seen: Counter[str] = Counter()
        self.swarm_enabled: set[str] | None = None

    def observe(self, entry: dict[str, Any]) -> None:
        kind = entry["type"]
        seen = self.seen
        if kind == "lock.granted" and (entry.get("wait_s") or 0) > 0:
            seen["lock_wait"] += 1
        elif kind == "lock.timeout":
            seen["lock_timeout"] += 1
            seen["lock_wait"] += 1
        elif kind == "webhook.attempt":
            if entry.get("duplicate") or entry.get("attempt", 1) > 1:
                seen["duplicate_delivery"] += 1
            if entry.get("overlapping"):
                seen["concurrent_delivery"] += 1
        elif kind == "op.fail" and entry.get("error") == "limit_reached":
            seen["limit_reached"] += 1
        elif kind == "op.info":
            seen["unknown_outcome"] += 1
        elif kind == "instance.crash":
            seen["crash"] += 1
        elif kind == "stripe.session" and entry.get("payment_status") == "paid":
            seen["payment"] += 1
        elif kind == "nemesis.swarm":
            self.swarm_enabled = set(entry.get("enabled", []))
        for fault, shows in _BY_TYPE.get(kind, ()):
            if shows(entry):
                seen[f"fault:{fault}"] += 1

    def missing(self, expect: list[str], fault_kinds: list[str]) -> list[str]:
        wanted = list(expect)
        for fault in fault_kinds:
            if self.swarm_enabled is None or fault in self.swarm_enabled:
                wanted.append(f"fault:{fault}")
        return [w for w in dict.fromkeys(wanted) if not self.seen.get(w)]
