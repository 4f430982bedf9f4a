"""A scenario: programs, workload, faults, topology, durations and thresholds, as plain values.

Every field has a default, so a scenario states only what it is about. Scenario files (TOML) map
one-to-one onto these dataclasses; times are virtual seconds. Each field carries its own
documentation and valid range in `metadata` (keys `help`, `min`, `max`, `choices`,
`infinite_ok`, `ordered`), so the file loader validates and the key reference documents a new
field without new code. Cross-field rules live in each class's `problems()`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from reference_impl.ports import EngineConfig
from simulator.blackbox.settings import BlackboxSettings

WORKLOAD_KINDS: Mapping[str, str] = {
    "herd": "`count` users each buy the same program at `at` (a thundering herd)",
    "double_click": "each of `count` users clicks Buy `clicks` times at once, at `at`",
    "steady": "open-model arrivals at `rate_per_s` from `at` for `duration_s`, at most `count`",
}

#: the nemesis' fault kinds (simulator/nemesis.py implements them; a test keeps the two equal)
FAULT_KINDS: Mapping[str, str] = {
    "stripe_latency": "a Stripe API call is delayed by `value_s` with `probability`",
    "stripe_errors": "a Stripe API call answers HTTP 500 with `probability`",
    "stripe_errors_after_execution": "a Stripe API write executes, then answers HTTP 500 all the "
    "same, with `probability`: Stripe keeps the 500 under its idempotency key, so every retry "
    "with the key gets it again and only events or a later read tell what happened",
    "stripe_outage": "every Stripe API call fails while the fault is active",
    "stripe_slow_execution": "Stripe takes `value_s` to execute every API call while the fault is "
    "active (a loaded Stripe): meanwhile its idempotency key is in use, and a request reusing "
    "it gets 409 `idempotency_key_in_use`",
    "stripe_connection_errors": "a Stripe API call fails to connect with `probability`",
    "stripe_lost_response": "Stripe acts on a request but its response is lost, with `probability`",
    "stripe_rate_limit": "Stripe answers 429 above `rate` requests per second",
    "email_outage": "sending a receipt fails with `probability`",
    "store_latency": "a store call waits up to `value_s` with `probability`",
    "slow_handler": "instance `target` (or `any`) stalls `value_s` before a store call, with "
    "`probability`",
    "webhook_duplicates": "an event is delivered again (at once or late) with `probability`",
    "webhook_reorder": "deliveries are jittered by up to `value_s`, so events arrive out of order",
    "webhook_failures": "the webhook endpoint answers 500 before the engine sees the event, "
    "with `probability`",
    "crash": "instance `target` (or `any`) crashes at a store call with `probability`",
    "crash_before_side_effect": "instance `target` (or `any`) crashes just before it grants "
    "access or sends a receipt, with `probability`: what its store says is done, the customer "
    "has not got yet",
    "pause": "instance `target` stops making progress for the fault window (a GC/VM pause)",
    "lease_pause": "a lock holder on `target` (or `any`) stalls `value_s` at its first write "
    "after the grant, with `probability` per grant: longer than `topology.lease_s`, the next "
    "holder enters meanwhile",
    "redis_restart": "Redis loses the run's keys at `start` (locks and fence counters), then "
    'refuses commands for `value_s` (`locks = "redis"` only)',
    "redis_latency": 'each Redis command is delayed by `value_s` with `probability` (`locks = "redis"` only)',
}

#: the settings each fault kind reads besides its window (`start`, `end`): a file that sets any
#: other is refused, since it would do nothing (a `probability` on `stripe_outage` is not a
#: partial outage); tests check it against each kind's description and what the nemesis sets
FAULT_SETTINGS: Mapping[str, tuple[str, ...]] = {
    "stripe_latency": ("probability", "value_s"),
    "stripe_errors": ("probability",),
    "stripe_errors_after_execution": ("probability",),
    "stripe_outage": (),
    "stripe_slow_execution": ("value_s",),
    "stripe_connection_errors": ("probability",),
    "stripe_lost_response": ("probability",),
    "stripe_rate_limit": ("rate",),
    "email_outage": ("probability",),
    "store_latency": ("probability", "value_s"),
    "slow_handler": ("probability", "value_s", "target"),
    "webhook_duplicates": ("probability",),
    "webhook_reorder": ("value_s",),
    "webhook_failures": ("probability",),
    "crash": ("probability", "target"),
    "crash_before_side_effect": ("probability", "target"),
    "pause": ("target",),
    "lease_pause": ("probability", "value_s", "target"),
    "redis_restart": ("value_s",),
    "redis_latency": ("probability", "value_s"),
}
#: the settings a fault kind may or may not read
FAULT_OPTIONAL = ("probability", "value_s", "rate", "target")
#: what the writer of an unread setting most likely meant
_INSTEAD: Mapping[tuple[str, str], str] = {
    ("stripe_outage", "probability"): (
        " (for some calls failing, not all: stripe_errors or stripe_connection_errors)"
    ),
    ("stripe_outage", "value_s"): " (for slow calls: stripe_latency or stripe_slow_execution)",
    ("webhook_reorder", "probability"): " (every delivery is jittered by up to value_s)",
}


#: what a run must show for its verdict to mean something: a run missing an expected kind of
#: evidence is vacuous (simulator/checkers/evidence.py detects them; a test keeps the two equal)
EVIDENCE_KINDS: Mapping[str, str] = {
    "lock_wait": "some lock request waited longer than 0 s, or timed out",
    "lock_timeout": "some lock request timed out (`lock.timeout`)",
    "duplicate_delivery": "some event was delivered more than once (a duplicate or a retry)",
    "concurrent_delivery": "two deliveries of one event overlapped in time",
    "limit_reached": "some purchase was refused because the class-rep seats were full",
    "unknown_outcome": "some operation ended with an unknown outcome (`op.info`)",
    "crash": "some engine instance crashed mid-request (`instance.crash`)",
    "payment": "some Checkout Session was paid",
}

#: the adversary's attack families (simulator/attacks.py builds them; a test keeps the two equal)
ATTACKS: Mapping[str, str] = {
    "header_tricks": "a captured event under a doctored `Stripe-Signature`: a fresh `t` "
    "prepended, appended or spaced, `t=..=x`, duplicate or empty `v1`, another scheme, odd "
    "separators, non-numeric and huge timestamps, a wrong secret, no header (expect 400)",
    "replays": "a captured event, correctly signed but past the tolerance (expect 400)",
    "tampered": "a signed event whose body was changed afterwards (expect 400)",
    "foreign_sessions": "a real Checkout Session created outside the engine naming a purchase in "
    "`client_reference_id` or metadata, then paid: underpaid, other currency, other mode or full "
    "price (expect: never completes the purchase; acknowledged; refunded or kept for a human)",
    "signed_mismatch": "a correctly signed completion of a purchase's own session that is "
    "underpaid, in another currency, another mode or without a PaymentIntent (expect: never "
    "completes it)",
    "type_confusion": "correctly signed, with numbers, lists or objects where strings belong, or "
    "a field missing (expect 400)",
    "injection": 'correctly signed, with a store operator (`{"$gt": ""}`) in every id field '
    "(expect 400)",
    "deep_nesting": "correctly signed, JSON nested 40 and 3,000 deep (expect 400)",
    "huge_integers": "correctly signed, integers past 2^63 (expect 400)",
    "huge_bodies": "correctly signed, a body of 300 KiB (expect 400)",
    "unknown_types": "correctly signed events of types the engine does not handle (expect 2xx, "
    "no change)",
    "unknown_objects": "correctly signed events for sessions, PaymentIntents and purchases that "
    "do not exist (expect 2xx, no purchase changed)",
    # appended with weight 0 by default: `rng.choices` then draws the families exactly as before
    "contradictions": "correctly signed `checkout.session.expired` and "
    "`checkout.session.async_payment_failed` events for the attacker's open session whose object "
    "contradicts the type (still open, or paid), or naming its purchase from a session the "
    "engine never issued (expect: no purchase changed)",
    "success_page_probes": "the success page opened with a `session_id` that is no Checkout "
    "Session's: empty, the unexpanded `{CHECKOUT_SESSION_ID}` template, another object's id, a "
    "path, 5,000 characters, an unknown session (expect: nothing changed, nothing raised)",
    "foreign_cancels": "cancels of other customers' purchases, by ids guessed from the "
    "attacker's own (expect: refused, nothing changed: `only_owner_cancels`)",
}

PRELOAD_STATUSES: Mapping[str, str] = {
    "pending": "pending, its seat held",
    "cancelled": "cancelled without expiring its Checkout Session (as the seed does): its seat "
    "given back, its Checkout tab still payable",
}

BALANCERS: Mapping[str, str] = {
    "round_robin": "requests go to the live instances in turn",
    "random": "each request goes to a random live instance",
}

LOCK_MODES: Mapping[str, str] = {
    "memory": "each instance has its own in-memory lock table (the seed's design)",
    "shared": "one in-memory lock service shared by every instance",
    "redis": "every instance locks on one Redis (`redis_url`) with fenced leases of `lease_s`; "
    "the run is wall-clock (Redis expires leases in real time), so its times are real seconds",
}

WEBHOOK_MODES: Mapping[str, str] = {
    "live": "Stripe live mode: retries with back-off for up to 3 days",
    "test": "Stripe test mode: a few retries over a few hours",
}

#: upper bounds of numeric keys: past them a run would last for ever or exhaust memory (a
#: test checks that every numeric key has one, so the key reference documents it)
MAX_SECONDS = 30 * 86400.0  # 30 days: longer than Stripe's 3-day retries and a 24 h session
MAX_MILLISECONDS = MAX_SECONDS * 1000
MAX_WEIGHT = 1_000_000.0
MAX_RATE = 100_000.0
#: longest string value, and most items in a list, a scenario file may hold
MAX_STRING_CHARS = 10_000
MAX_ITEMS = 10_000
REDIS_URL_SCHEMES = ("redis://", "rediss://", "unix://")

#: a Checkout Session may expire between 30 minutes and 24 hours after creation (Stripe's rule)
MIN_SESSION_TTL_S = 1800.0
MAX_SESSION_TTL_S = 86400.0

#: how long Stripe keeps an idempotency key (simulator/fake_stripe/idempotency.py KEY_TTL_S, a
#: test keeps the two equal): a create whose answer was lost is learned by replaying it with its
#: key, so only within this window
IDEMPOTENCY_WINDOW_S = 86400.0

#: EngineConfig lives in reference_impl (the engine boundary) and carries no metadata of its
#: own; its documentation and ranges as scenario keys are kept here.
EXTERNAL_METADATA: Mapping[type, Mapping[str, Mapping[str, Any]]] = {
    EngineConfig: {
        "purchase_lock_timeout": {
            "help": "seconds a purchase waits for its user+program lock before answering busy (503)",
            "min": 0.0,
            "max": 3600.0,
        },
        "webhook_lock_timeout": {
            "help": "seconds a webhook waits for its session lock before answering 5xx (Stripe retries)",
            "min": 0.0,
            "max": 3600.0,
        },
        "stripe_timeout": {
            "help": "seconds before a Stripe API call is abandoned",
            "min": 0.0,
            "max": 3600.0,
        },
        "reconcile_stripe_timeout": {
            "help": "seconds `reconcile` waits for a Stripe API call (nobody waits on a sweep)",
            "min": 0.0,
            "max": 3600.0,
        },
        "stripe_retries": {
            "help": "times the engine itself retries creating a Checkout Session",
            "min": 0,
            "max": 10,
        },
        "webhook_tolerance": {
            "help": (
                "seconds a webhook signature's timestamp may be old before it is refused; "
                "0 checks no age at all, as the Stripe SDKs take tolerance 0"
            ),
            "min": 0.0,
            "max": MAX_SECONDS,
        },
        "session_ttl": {
            "help": "seconds until a Checkout Session expires (Stripe allows 30 min to 24 h)",
            "min": MIN_SESSION_TTL_S,
            "max": MAX_SESSION_TTL_S,
        },
        "reconcile_grace": {
            "help": "seconds an unresolved purchase or orphan seat waits before `reconcile` resolves it",
            "min": 0.0,
            "max": MAX_SECONDS,
        },
        "currency": {"help": "ISO currency code of the Checkout Session's price"},
        "success_url": {"help": "where Stripe sends the customer after paying"},
        "cancel_url": {"help": "where Stripe sends the customer who backs out"},
    }
}


def setting(default: Any, help: str, **limits: Any) -> Any:
    """A dataclass field with a default, its documentation and its valid range or choices."""
    return field(default=default, metadata={"help": help, **limits})


Problems = list[tuple[str, str]]
"""(dotted key relative to the object, what is wrong) pairs from a cross-field check."""


@dataclass(frozen=True)
class ProgramSpec:
    """A program users can buy, with a cap on class-rep seats."""

    id: str = setting("prog_1", "program id; workload parts name it in `program`")
    class_rep_limit: int = setting(
        3, "class-rep seats the program sells at most", min=0, max=1_000_000
    )
    price_cents: int = setting(
        5000, "price in cents (Stripe's smallest unit)", min=1, max=99_999_999
    )
    withdrawn: bool = setting(
        False,
        "taken off sale: not in the store, yet old links (a newsletter, a bookmark) still point "
        "at it, so customers buying it must be refused as not found",
    )

    def problems(self) -> Problems:
        return [("id", "expected a non-empty string")] if not self.id else []


@dataclass(frozen=True)
class CustomerMix:
    """What a customer does with the Checkout page, as relative weights."""

    pay: float = setting(0.6, "weight: pays by card", min=0.0, max=MAX_WEIGHT)
    decline_then_pay: float = setting(
        0.05, "weight: the card is declined, then pays", min=0.0, max=MAX_WEIGHT
    )
    decline: float = setting(
        0.05,
        "weight: declined, gives up; the session stays open until it expires",
        min=0.0,
        max=MAX_WEIGHT,
    )
    async_success: float = setting(
        0.05, "weight: an async method (bank debit) that later succeeds", min=0.0, max=MAX_WEIGHT
    )
    async_failure: float = setting(
        0.02, "weight: an async method (bank debit) that later fails", min=0.0, max=MAX_WEIGHT
    )
    abandon: float = setting(
        0.13, "weight: closes the page; the session expires", min=0.0, max=MAX_WEIGHT
    )
    cancel: float = setting(
        0.05, "weight: cancels on the site, then leaves", min=0.0, max=MAX_WEIGHT
    )
    cancel_clicks: int = setting(
        1,
        "requests a cancelling customer's click on Cancel sends (`cancel`): 2 is a double "
        "click, its requests possibly served by two instances at once",
        min=1,
        max=10,
    )
    pay_after_cancel: float = setting(
        0.05,
        "weight: cancels in one tab, pays in the still-open other tab",
        min=0.0,
        max=MAX_WEIGHT,
    )
    think_time_s: tuple[float, float] = setting(
        (5.0, 120.0),
        "[low, high] seconds between opening Checkout and acting, drawn uniformly",
        min=0.0,
        max=MAX_SECONDS,
        ordered=True,
    )
    redirect: bool = setting(
        True, "the success page calls the engine too, racing the webhook (if the engine can)"
    )
    # ---- the whole life of a payment; all off by default, drawn from the
    # `customer_timeline` stream so that scenarios without them keep their histories
    late_share: float = setting(
        0.0,
        "chance a customer's think time is drawn from `late_think_s` instead: the long tail "
        "(minute 20, hour 23, after the session expired)",
        min=0.0,
        max=1.0,
    )
    late_think_s: tuple[float, float] = setting(
        (1200.0, 90000.0),
        "[low, high] seconds of a late customer's think time, drawn log-uniformly",
        min=0.001,
        max=MAX_SECONDS,
        ordered=True,
    )
    buy_again: float = setting(
        0.0,
        "weight: comes back after `return_after_s`, clicks Buy again, pays in the tab it gets",
        min=0.0,
        max=MAX_WEIGHT,
    )
    buy_again_old_tab: float = setting(
        0.0,
        "weight: comes back after `return_after_s`, clicks Buy again in a new tab and pays in "
        "the OLD tab 0-3 s later",
        min=0.0,
        max=MAX_WEIGHT,
    )
    second_tab: float = setting(
        0.0,
        "weight: clicks Buy again in a second tab after `return_after_s` and pays in both tabs",
        min=0.0,
        max=MAX_WEIGHT,
    )
    cancel_then_old_tab: float = setting(
        0.0,
        "weight: cancels on the site, comes back after `return_after_s` and pays in the old tab",
        min=0.0,
        max=MAX_WEIGHT,
    )
    debit_then_buy_again: float = setting(
        0.0,
        "weight: pays by bank debit, comes back after `return_after_s` while it is processing "
        "and clicks Buy again (and pays, if it is shown a checkout page)",
        min=0.0,
        max=MAX_WEIGHT,
    )
    pay_then_buy_again: float = setting(
        0.0,
        "weight: pays by card, comes back after `return_after_s` having forgotten, and clicks "
        "Buy again (it owns the program: it must be refused; it pays if shown a checkout page)",
        min=0.0,
        max=MAX_WEIGHT,
    )
    return_after_s: tuple[float, float] = setting(
        (3600.0, 86400.0),
        "[low, high] seconds until a returning customer comes back, drawn log-uniformly",
        min=0.001,
        max=MAX_SECONDS,
        ordered=True,
    )
    settle_after_s: tuple[float, float] = setting(
        (120.0, 120.0),
        "[low, high] seconds a delayed method stays processing before it succeeds or fails, "
        "drawn log-uniformly (bank debits: 1-5 days)",
        min=0.0,
        max=MAX_SECONDS,
        ordered=True,
    )
    redirect_every_method: bool = setting(
        False,
        "the success page is also opened for a delayed method (session complete, `unpaid`) and "
        "reloaded once it settles (`redirect` and an engine that can)",
    )
    pending_page: float = setting(
        0.0,
        'chance that a customer, after acting, later opens "my pending purchases" (it runs the '
        "engine's `list_pending_purchases` where the engine has one, a no-op elsewhere)",
        min=0.0,
        max=1.0,
    )
    pending_page_after_s: tuple[float, float] = setting(
        (60.0, 600.0),
        "[low, high] seconds after acting that the customer opens that page, drawn uniformly",
        min=0.0,
        max=MAX_SECONDS,
        ordered=True,
    )

    def problems(self) -> Problems:
        weights = (
            self.pay,
            self.decline_then_pay,
            self.decline,
            self.async_success,
            self.async_failure,
            self.abandon,
            self.cancel,
            self.pay_after_cancel,
            self.buy_again,
            self.buy_again_old_tab,
            self.second_tab,
            self.cancel_then_old_tab,
            self.debit_then_buy_again,
            self.pay_then_buy_again,
        )
        return (
            [("pay", "expected at least one customer weight above 0")] if not any(weights) else []
        )


@dataclass(frozen=True)
class WorkloadPart:
    """One generator of client operations (see `kind`)."""

    kind: str = setting("steady", "the shape of the arrivals", choices=WORKLOAD_KINDS)
    program: str = setting("prog_1", "id of the program bought (one of `[[programs]]`)")
    count: int = setting(
        10, "users (herd, double_click) or at most this many arrivals (steady)", min=0, max=100_000
    )
    at: float = setting(1.0, "virtual second the part starts", min=0.0, max=MAX_SECONDS)
    clicks: int = setting(3, "clicks per user (double_click)", min=1, max=100)
    click_gap_s: float = setting(
        0.0,
        "seconds between one user's clicks (double_click): 0 clicks all at once; more is an "
        "impatient user who clicks again while the first click is still loading",
        min=0.0,
        max=MAX_SECONDS,
    )
    rate_per_s: float = setting(
        1.0, "mean arrivals per virtual second (steady)", min=0.001, max=10_000.0
    )
    duration_s: float = setting(
        60.0, "seconds the arrivals last (steady)", min=0.0, max=MAX_SECONDS
    )
    class_rep: bool = setting(True, "users buy a class-rep seat (counted against the limit)")


@dataclass(frozen=True)
class FaultSpec:
    """One nemesis fault, active in [start, end) virtual seconds (see `kind`)."""

    kind: str = field(metadata={"help": "what goes wrong (required)", "choices": FAULT_KINDS})
    start: float = setting(0.0, "virtual second the fault switches on", min=0.0, max=MAX_SECONDS)
    end: float = setting(
        float("inf"),
        "virtual second it switches off; every fault stops when the workload phase ends",
        min=0.0,
        max=MAX_SECONDS,
        infinite_ok=True,
    )
    probability: float = setting(
        1.0, "chance per event (request, operation, delivery)", min=0.0, max=1.0
    )
    value_s: float = setting(0.0, "a duration: latency, stall, jitter", min=0.0, max=MAX_SECONDS)
    rate: float = setting(25.0, "requests per second (stripe_rate_limit)", min=0.01, max=MAX_RATE)
    target: str = setting(
        "i0",
        "instance `i0`, `i1`, ... or `any` (crash, crash_before_side_effect, pause, "
        "slow_handler, lease_pause)",
    )

    def problems(self) -> Problems:
        if self.end < self.start:
            return [
                ("end", f"expected a time at or after start ({self.start:g}), got {self.end:g}")
            ]
        reads = FAULT_SETTINGS.get(self.kind)  # None: an unknown kind, refused by its choices
        readable = FAULT_OPTIONAL if reads is None else reads
        unread = [name for name in self._changed() if name not in readable]
        if unread:
            uses = ", ".join(("start", "end", *(reads or ())))
            hint = _INSTEAD.get((self.kind, unread[0]), "")
            return [(unread[0], f"{self.kind} does not read {unread[0]}: it reads {uses}{hint}")]
        return []

    def _changed(self) -> list[str]:
        defaults = FaultSpec(kind=self.kind)
        return [n for n in FAULT_OPTIONAL if getattr(self, n) != getattr(defaults, n)]

    def without_unread(self) -> FaultSpec:
        """The same fault with every setting its kind does not read at its default (what a
        generated fault becomes before it is run or written)."""
        reads = FAULT_SETTINGS.get(self.kind, FAULT_OPTIONAL)
        defaults = FaultSpec(kind=self.kind)
        unread = {n: getattr(defaults, n) for n in FAULT_OPTIONAL if n not in reads}
        return replace(self, **unread)


@dataclass(frozen=True)
class RollingDeploy:
    """At `at`, a new instance starts; the old one keeps serving for `overlap_s`, then stops."""

    at: float = setting(30.0, "virtual second the new instance starts", min=0.0, max=MAX_SECONDS)
    overlap_s: float = setting(
        60.0, "seconds old and new instances serve together", min=0.0, max=MAX_SECONDS
    )


@dataclass(frozen=True)
class Topology:
    """Engine instances behind a load balancer, and where their locks live."""

    instances: int = setting(1, "engine instances behind the load balancer", min=1, max=64)
    balancer: str = setting("round_robin", "how requests are spread", choices=BALANCERS)
    locks: str = setting("memory", "which lock service the instances use", choices=LOCK_MODES)
    redis_url: str | None = setting(
        None,
        'Redis URL when `locks = "redis"`; else REDIS_URL, else redis://127.0.0.1:6379/15 '
        "(a run only touches keys under its own namespace)",
    )
    lease_s: float = setting(
        30.0, 'lease of a Redis lock, real seconds (`locks = "redis"`)', min=0.001, max=3600.0
    )
    rolling_deploy: RollingDeploy | None = setting(None, "replace instance i0 by a new one mid-run")

    def problems(self) -> Problems:
        url = self.redis_url
        if url is not None and not url.startswith(REDIS_URL_SCHEMES):
            schemes = ", ".join(REDIS_URL_SCHEMES)
            return [("redis_url", f"expected a URL starting {schemes}, got {json.dumps(url)}")]
        return []

    def instance_names(self) -> tuple[str, ...]:
        extra = 1 if self.rolling_deploy else 0
        return tuple(f"i{n}" for n in range(self.instances + extra))


@dataclass(frozen=True)
class Durations:
    """How long each phase of the run may last, in virtual seconds."""

    workload_s: float = setting(
        300.0, "client operations and faults happen within this window", min=0.0, max=MAX_SECONDS
    )
    liveness_s: float = setting(
        4 * 86400.0,
        "fault-free phase after it: Stripe keeps retrying, sessions expire, reconcile runs",
        min=0.0,
        max=MAX_SECONDS,
    )
    reconcile_every_s: float = setting(
        300.0, "seconds between `reconcile` sweeps", min=1.0, max=MAX_SECONDS
    )


@dataclass(frozen=True)
class Thresholds:
    """Lock-wait SLOs; defaults are the seed document's own targets. Missed → exit code 3."""

    mean_wait_ms: float = setting(
        50.0, "mean lock wait, milliseconds", min=0.0, max=MAX_MILLISECONDS
    )
    p95_wait_ms: float | None = setting(
        None, "95th percentile lock wait, milliseconds", min=0.0, max=MAX_MILLISECONDS
    )
    p99_wait_ms: float | None = setting(
        None, "99th percentile lock wait, milliseconds", min=0.0, max=MAX_MILLISECONDS
    )
    max_wait_ms: float | None = setting(
        None, "longest lock wait, milliseconds", min=0.0, max=MAX_MILLISECONDS
    )
    timeout_ratio: float = setting(
        0.001, "lock timeouts per lock request, at most", min=0.0, max=1.0
    )


@dataclass(frozen=True)
class WebhookSettings:
    """How Stripe delivers webhook events."""

    mode: str = setting("live", "Stripe's retry schedule", choices=WEBHOOK_MODES)
    delivery_timeout_s: float = setting(
        30.0, "seconds Stripe waits for a response before counting a failure", min=0.1, max=300.0
    )


@dataclass(frozen=True)
class PreloadPurchase:
    """A purchase already in the store when the run starts, its Checkout Session open at Stripe
    (and, while pending, its seat counted): data an earlier release of the engine wrote."""

    user_id: str = setting("legacy_user", "the user who made it")
    program: str = setting("prog_1", "id of the program it buys (one of `[[programs]]`)")
    class_rep: bool = setting(True, "it holds a class-rep seat (counted in `class_rep_count`)")
    customer_at: float = setting(
        1.0, "virtual second its customer acts on the open Checkout page", min=0.0, max=MAX_SECONDS
    )
    status: str = setting(
        "pending",
        "how the earlier release left it",
        choices=PRELOAD_STATUSES,
    )


@dataclass(frozen=True)
class AttackWeights:
    """Relative weights of the adversary's attack families (0 switches one off)."""

    header_tricks: float = setting(
        3.0, "weight: doctored signature headers", min=0.0, max=MAX_WEIGHT
    )
    replays: float = setting(
        1.0, "weight: signed events past the tolerance", min=0.0, max=MAX_WEIGHT
    )
    tampered: float = setting(1.0, "weight: bodies changed after signing", min=0.0, max=MAX_WEIGHT)
    foreign_sessions: float = setting(
        2.0, "weight: paid sessions made outside the engine", min=0.0, max=MAX_WEIGHT
    )
    signed_mismatch: float = setting(
        2.0, "weight: own session, not paid in full", min=0.0, max=MAX_WEIGHT
    )
    type_confusion: float = setting(
        1.0, "weight: wrong types, missing fields", min=0.0, max=MAX_WEIGHT
    )
    injection: float = setting(1.0, "weight: store operators in id fields", min=0.0, max=MAX_WEIGHT)
    deep_nesting: float = setting(0.5, "weight: deeply nested JSON", min=0.0, max=MAX_WEIGHT)
    huge_integers: float = setting(0.5, "weight: integers past 2^63", min=0.0, max=MAX_WEIGHT)
    huge_bodies: float = setting(0.5, "weight: 300 KiB bodies", min=0.0, max=MAX_WEIGHT)
    unknown_types: float = setting(
        0.5, "weight: event types the engine ignores", min=0.0, max=MAX_WEIGHT
    )
    unknown_objects: float = setting(
        1.0, "weight: events for objects that do not exist", min=0.0, max=MAX_WEIGHT
    )
    contradictions: float = setting(
        0.0,
        "weight: expired/failed events contradicting their object, or not its session",
        min=0.0,
        max=MAX_WEIGHT,
    )
    success_page_probes: float = setting(
        0.0, "weight: success page opened with bad session ids", min=0.0, max=MAX_WEIGHT
    )
    foreign_cancels: float = setting(
        0.0, "weight: cancels of other customers' purchases", min=0.0, max=MAX_WEIGHT
    )


@dataclass(frozen=True)
class AdversarySettings:
    """A hostile party posting webhooks and paying foreign sessions (simulator/adversary.py);
    off by default. It draws from its own random stream, so enabling it never reshuffles the
    workload or the faults."""

    enabled: bool = setting(False, "switch the adversary on")
    attacks: int = setting(
        40, "attacks it makes, spread over the workload window", min=0, max=10_000
    )
    start: float = setting(2.0, "virtual second of its first attack", min=0.0, max=MAX_SECONDS)
    attackers: int = setting(
        2,
        "customer accounts it buys with (non class-rep purchases, to learn real ids and sessions)",
        min=1,
        max=100,
    )
    weights: AttackWeights = setting(AttackWeights(), "how often each family is drawn")

    def problems(self) -> Problems:
        if self.enabled and not any(getattr(self.weights, k) for k in ATTACKS):
            return [("weights", "expected at least one attack weight above 0")]
        return []


@dataclass(frozen=True)
class Scenario:
    """One scenario file."""

    name: str = setting("scenario", "shown in reports and the replay command")
    description: str = setting("", "what the scenario is about, in a sentence or two")
    seeds: tuple[int, ...] = setting(
        (1,), "seeds a suite runs when not given --seeds", min=0, max=2**32 - 1
    )
    programs: tuple[ProgramSpec, ...] = setting((ProgramSpec(),), "the programs for sale")
    workload: tuple[WorkloadPart, ...] = setting(
        (WorkloadPart(),), "generators of client operations"
    )
    customers: CustomerMix = setting(CustomerMix(), "what customers do on the Checkout page")
    preload: tuple[PreloadPurchase, ...] = setting(
        (), "pending purchases already in the store at the start (written by an earlier release)"
    )
    faults: tuple[FaultSpec, ...] = setting((), "the nemesis' schedule")
    swarm: bool = setting(False, "each seed switches every fault kind on or off (swarm testing)")
    topology: Topology = setting(Topology(), "instances, load balancer and locks")
    durations: Durations = setting(Durations(), "phase lengths")
    thresholds: Thresholds = setting(Thresholds(), "lock-wait SLOs")
    webhooks: WebhookSettings = setting(WebhookSettings(), "webhook delivery")
    stripe_latency_s: float = setting(
        0.15,
        "Stripe's round trip for every API request, seconds (half up the wire, half down), for "
        "the whole run: no fault, the liveness phase keeps it",
        min=0.0,
        max=60.0,
    )
    stripe_max_network_retries: int | None = setting(
        None,
        "retries the Stripe SDK makes on a network error or 5xx; unset: the engine's own SDK "
        "default (the seed: stripe-node's 1; others: stripe-python's 2)",
        min=0,
        max=10,
    )
    engine_config: EngineConfig = field(
        default_factory=lambda: EngineConfig(session_ttl=3600.0),
        metadata={"help": "timeouts and policies handed to the engine (seconds)"},
    )
    expect: tuple[str, ...] = setting(
        (), "evidence the run must show, else it is vacuous", choices=EVIDENCE_KINDS
    )
    adversary: AdversarySettings = setting(
        AdversarySettings(), "hostile webhooks and foreign sessions (off by default)"
    )
    expect_fail: tuple[str, ...] = setting(
        (),
        'engines this scenario is EXPECTED to fail (e.g. `["seed"]`, a design with known '
        "bugs): the suite index shows their failures in a neutral colour and its banner says "
        "whether every expectation held; the exit code still reports the failure",
    )
    blackbox: BlackboxSettings = setting(
        BlackboxSettings(), "black-box mode: how `paysim blackbox` reaches a running service"
    )

    def on_sale(self) -> tuple[ProgramSpec, ...]:
        """The programs in the store (the withdrawn ones are only linked to)."""
        return tuple(p for p in self.programs if not p.withdrawn)

    def problems(self) -> Problems:
        found: Problems = []
        if not self.name:
            found.append(("name", "expected a non-empty string"))
        ids = [p.id for p in self.programs]
        if not ids:
            found.append(("programs", "expected at least one [[programs]] table"))
        for n, pid in enumerate(ids):
            if pid in ids[:n]:
                found.append((f"programs[{n}].id", f"duplicate program id {json.dumps(pid)}"))
        for n, part in enumerate(self.workload):
            if part.program not in ids:
                known = ", ".join(json.dumps(i) for i in ids)
                found.append(
                    (
                        f"workload[{n}].program",
                        f"expected a program id ({known}), got {json.dumps(part.program)}",
                    )
                )
        on_sale = [p.id for p in self.on_sale()]
        for n, old in enumerate(self.preload):
            if old.program not in on_sale:
                found.append(
                    (
                        f"preload[{n}].program",
                        f"expected the id of a program on sale, got {json.dumps(old.program)}",
                    )
                )
            # the store holds one purchase slot per user and program (simulator/run.py)
            if any((o.user_id, o.program) == (old.user_id, old.program) for o in self.preload[:n]):
                found.append(
                    (
                        f"preload[{n}].user_id",
                        f"a second preloaded purchase of {json.dumps(old.user_id)} for "
                        f"{json.dumps(old.program)}: at most one per user and program",
                    )
                )
            # a pending class-rep purchase holds a seat: more than the limit would start the run
            # with the limit already bypassed (a violation no engine made)
            limit = next((p.class_rep_limit for p in self.programs if p.id == old.program), None)
            holds_seat = old.class_rep and old.status == "pending"
            seated = sum(
                1
                for o in self.preload[: n + 1]
                if o.program == old.program and o.class_rep and o.status == "pending"
            )
            if holds_seat and limit is not None and seated > limit:
                found.append(
                    (
                        f"preload[{n}].class_rep",
                        f"pending class-rep purchase number {seated} of "
                        f"{json.dumps(old.program)}, whose class_rep_limit is {limit}: the run "
                        "would start past the limit",
                    )
                )
        if self.adversary.enabled and self.programs and self.programs[0].withdrawn:
            found.append(("programs[0].withdrawn", "the adversary buys the first program"))
        targets = (*self.topology.instance_names(), "any")
        for n, fault in enumerate(self.faults):
            if fault.target not in targets:
                known = ", ".join(json.dumps(t) for t in targets)
                found.append(
                    (
                        f"faults[{n}].target",
                        f"expected one of {known}, got {json.dumps(fault.target)}",
                    )
                )
        found.extend(self._fleet_pause_problems())
        found.extend(self._stripe_reach_problems())
        found.extend(self._stripe_outage_problems())
        return found

    def _stripe_outage_problems(self) -> Problems:
        """The fleet-wide pause below, from Stripe's side: while Stripe is down every replay of
        a create whose answer was lost just before fails, and once it has been down about a day
        Stripe has forgotten the key, so no engine can learn that session by asking: it is left
        with what Stripe's events tell it, if they come. Refused past Stripe's idempotency
        window less one sweep interval."""
        windows = self._fault_windows("stripe_outage")
        too_long = self._past_replay(_merged([(a, b) for a, b, _, _ in windows]))
        if too_long is None:
            return []
        start, end, limit = too_long
        n = min(i for a, b, i, _ in windows if start <= a and b <= end)
        return [
            (
                f"faults[{n}].end",
                f"Stripe is down from {start:g} to {end:g} s ({end - start:g} s): expected an "
                f"outage of at most {limit:g} s {_PAST_REPLAY}",
            )
        ]

    def _stripe_reach_problems(self) -> Problems:
        """`stripe_latency_s` lasts the whole run (the liveness phase ends faults, not it). At
        or past the longest the engine is told to wait for Stripe, no call is ever answered in
        time: no create, retrieve or refund is ever confirmed, and a create that never landed
        leaves no session whose events could tell, so any engine that honours its timeouts
        holds seats and owes refunds for ever (`EngineConfig.reconcile_stripe_timeout` exists
        for this). Refused, as a fleet-wide pause past Stripe's idempotency window is."""
        config = self.engine_config
        field_name, longest = max(
            ("engine_config.stripe_timeout", config.stripe_timeout),
            ("engine_config.reconcile_stripe_timeout", config.reconcile_stripe_timeout),
            key=lambda named: named[1],
        )
        if self.stripe_latency_s == 0 or self.stripe_latency_s < longest:
            return []
        return [
            (
                "stripe_latency_s",
                f"a round trip of {self.stripe_latency_s:g} s is at least {field_name} "
                f"({longest:g} s), the longest the engine waits for Stripe: expected less, or "
                "no Stripe call could ever be answered in time",
            )
        ]

    def _fleet_pause_problems(self) -> Problems:
        """A pause is a GC or VM pause. One that freezes every instance at once for about a day
        leaves nobody to sweep: when it ends, a create whose answer was lost just before it can
        no longer be replayed (Stripe has forgotten the key), so no engine can learn its
        session, and a request that stalled in it is answered days late, as no HTTP client
        waits. Refused when it lasts past Stripe's idempotency window less one sweep interval
        (the first sweep after it may come that much later)."""
        names = self.topology.instance_names()
        paused: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
        first: dict[str, int] = {}
        for start, end, n, target in self._fault_windows("pause"):
            if target in paused:
                paused[target].append((start, end))
                first.setdefault(target, n)
        if not names or any(not windows for windows in paused.values()):
            return []
        frozen = _merged(paused[names[0]])
        for name in names[1:]:
            frozen = _intersection(frozen, _merged(paused[name]))
        too_long = self._past_replay(frozen)
        if too_long is None:
            return []
        start, end, limit = too_long
        return [
            (
                f"faults[{min(first.values())}].end",
                f"every instance is paused from {start:g} to {end:g} s ({end - start:g} s): "
                f"expected a fleet-wide pause of at most {limit:g} s {_PAST_REPLAY}",
            )
        ]

    def _fault_windows(self, kind: str) -> list[tuple[float, float, int, str]]:
        """(start, end, index, target) of each `kind` fault whose window, cut at the end of
        the workload (where every fault stops), is not empty."""
        end_of_faults = self.durations.workload_s
        return [
            (fault.start, min(fault.end, end_of_faults), n, fault.target)
            for n, fault in enumerate(self.faults)
            if fault.kind == kind and fault.start < min(fault.end, end_of_faults)
        ]

    def _past_replay(self, windows: list[tuple[float, float]]) -> tuple[float, float, float] | None:
        """The first of the disjoint `windows` longer than Stripe's idempotency window less one
        sweep interval, with that limit: (start, end, limit)."""
        limit = max(IDEMPOTENCY_WINDOW_S - self.durations.reconcile_every_s, 0.0)
        return next(((a, b, limit) for a, b in windows if b - a > limit), None)


#: why a window past `Scenario._past_replay`'s limit is refused
_PAST_REPLAY = (
    "(Stripe's 24 h idempotency window less reconcile_every_s), past which a create whose "
    "answer was lost can no longer be resolved by replaying it"
)


def _merged(windows: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The union of [start, end) windows, as disjoint windows in order."""
    out: list[tuple[float, float]] = []
    for start, end in sorted(windows):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def _intersection(
    a: list[tuple[float, float]], b: list[tuple[float, float]]
) -> list[tuple[float, float]]:
    """Where two lists of disjoint, ordered windows overlap."""
    out, i, j = [], 0, 0
    while i < len(a) and j < len(b):
        start, end = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if start < end:
            out.append((start, end))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out
