"""A scenario: programs, workload, faults, topology, durations and thresholds, as plain values.

Every field has a default, so a scenario states only what it is about. Scenario files (TOML) map
one-to-one onto these dataclasses; times are virtual seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from reference_impl.ports import EngineConfig


@dataclass(frozen=True)
class ProgramSpec:
    id: str = "prog_1"
    class_rep_limit: int = 3
    price_cents: int = 5000


@dataclass(frozen=True)
class CustomerMix:
    """What a customer does with the Checkout page, as relative weights."""

    pay: float = 0.6
    decline_then_pay: float = 0.05
    decline: float = 0.05  # declines, then gives up: the session stays open until it expires
    async_success: float = 0.05
    async_failure: float = 0.02
    abandon: float = 0.13
    cancel: float = 0.05  # cancels on the site, then leaves
    pay_after_cancel: float = 0.05  # cancels in one tab, pays in the still-open other tab
    think_time_s: tuple[float, float] = (5.0, 120.0)
    redirect: bool = True  # the success page calls the engine too, racing the webhook


@dataclass(frozen=True)
class WorkloadPart:
    """One generator of client operations.

    kind: `herd` (count users buy the same program at `at`, a thundering herd),
    `double_click` (each of `count` users clicks `clicks` times at once),
    `steady` (open-model arrivals at `rate_per_s` from `at` for `duration_s`).
    """

    kind: str = "steady"
    program: str = "prog_1"
    count: int = 10
    at: float = 1.0
    clicks: int = 3
    rate_per_s: float = 1.0
    duration_s: float = 60.0
    class_rep: bool = True


@dataclass(frozen=True)
class FaultSpec:
    """One nemesis fault, active in [start, end) virtual seconds.

    kind: stripe_latency, stripe_errors, stripe_outage, stripe_connection_errors,
    stripe_lost_response, stripe_rate_limit, email_outage, store_latency, slow_handler,
    webhook_duplicates, webhook_reorder, webhook_failures, crash, pause.
    `probability` is per event (request, operation, delivery); `value_s` is a duration
    (latency, spike, pause length); `rate` a rate limit per second; `target` an instance.
    """

    kind: str
    start: float = 0.0
    end: float = float("inf")
    probability: float = 1.0
    value_s: float = 0.0
    rate: float = 25.0
    target: str = "i0"


@dataclass(frozen=True)
class RollingDeploy:
    """At `at`, a new instance starts; the old one keeps serving for `overlap_s`, then stops."""

    at: float = 30.0
    overlap_s: float = 60.0


@dataclass(frozen=True)
class Topology:
    instances: int = 1
    balancer: str = "round_robin"  # or "random"
    locks: str = "memory"  # per-instance in-memory; "shared" one in-memory service; "redis"
    redis_url: str | None = None
    rolling_deploy: RollingDeploy | None = None


@dataclass(frozen=True)
class Durations:
    workload_s: float = 300.0  # client operations start within this window
    liveness_s: float = 4 * 86400.0  # fault-free phase: Stripe keeps retrying, reconcile runs
    reconcile_every_s: float = 300.0


@dataclass(frozen=True)
class Thresholds:
    """Lock-wait SLOs; defaults are the seed document's own targets."""

    mean_wait_ms: float = 50.0
    p95_wait_ms: float | None = None
    p99_wait_ms: float | None = None
    max_wait_ms: float | None = None
    timeout_ratio: float = 0.001


@dataclass(frozen=True)
class WebhookSettings:
    mode: str = "live"  # "live": retries for 3 days; "test": a few attempts over hours
    delivery_timeout_s: float = 30.0


@dataclass(frozen=True)
class Scenario:
    name: str = "scenario"
    description: str = ""
    programs: tuple[ProgramSpec, ...] = (ProgramSpec(),)
    workload: tuple[WorkloadPart, ...] = (WorkloadPart(),)
    customers: CustomerMix = CustomerMix()
    faults: tuple[FaultSpec, ...] = ()
    swarm: bool = False  # each fault kind is switched on or off per seed
    topology: Topology = Topology()
    durations: Durations = Durations()
    thresholds: Thresholds = Thresholds()
    webhooks: WebhookSettings = WebhookSettings()
    stripe_latency_s: float = 0.15  # typical API latency (mean of an exponential)
    stripe_max_network_retries: int = 2
    engine_config: EngineConfig = field(default_factory=lambda: EngineConfig(session_ttl=3600.0))
    expect_contention: bool = True  # a run without any lock wait or duplicate is vacuous
