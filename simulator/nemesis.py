"""The nemesis: switches faults on and off on a schedule, and decides per event whether one hits.

Every decision draws from the `faults` random stream, so the fault schedule is part of the seed
and adding a fault kind never reshuffles the workload. In swarm mode a seed first switches whole
fault kinds on or off (Groce et al.'s swarm testing), so that no fault masks another in every run.

Lease faults: `lease_pause` stalls a lock holder at its first store write after the grant (its
decision already made on what it read) for `value_s`, longer than its lease, so the next holder
enters while it is away; `redis_restart` and `redis_latency` act on the run's Redis
(simulator/redis_faults.py, which also says what still holds under each) and need
`topology.locks = "redis"`: elsewhere they have nothing to act on, and the run is vacuous.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio

from reference_impl.store import WRITE_OPS
from simulator import side_effects, virtual_time
from simulator.clock import SimClock
from simulator.scenario import FaultSpec
from simulator.topology import HOLDING, Cluster, Instance

STRIPE_KINDS = {
    "stripe_latency",
    "stripe_errors",
    "stripe_errors_after_execution",
    "stripe_outage",
    "stripe_slow_execution",
    "stripe_connection_errors",
    "stripe_lost_response",
    "stripe_rate_limit",
}
WEBHOOK_KINDS = {"webhook_duplicates", "webhook_reorder", "webhook_failures"}
INSTANCE_KINDS = {
    "store_latency",
    "slow_handler",
    "crash",
    "crash_before_side_effect",
    "pause",
    "email_outage",
}
LEASE_KINDS = {"lease_pause"}
REDIS_KINDS = {"redis_restart", "redis_latency"}
FAULT_KINDS = frozenset(STRIPE_KINDS | WEBHOOK_KINDS | INSTANCE_KINDS | LEASE_KINDS | REDIS_KINDS)

#: how long a crashed instance stays down before it restarts (virtual seconds)
RESTART_AFTER_S = 5.0


@dataclass
class Nemesis:
    specs: tuple[FaultSpec, ...]
    rng: random.Random
    record: Callable[..., Any]
    stripe_faults: Any  # the fake's mutable StripeFaults
    webhook_policy: Any  # the delivery's mutable WebhookPolicy
    cluster: Cluster
    clock: SimClock
    task_group: Any = None
    swarm: bool = False
    redis: Any = None  # the run's RedisFaults when topology.locks = "redis"
    active: list[FaultSpec] = field(default_factory=list)
    stopped: bool = False

    def __post_init__(self) -> None:
        if self.swarm:
            kinds = sorted({s.kind for s in self.specs})
            enabled = {k for k in kinds if self.rng.random() < 0.5}
            self.record(
                "nemesis.swarm", enabled=sorted(enabled), disabled=sorted(set(kinds) - enabled)
            )
            self.specs = tuple(s for s in self.specs if s.kind in enabled)

    async def run(self, faults_end: float) -> None:
        """Apply the schedule until `faults_end`, then switch every fault off (liveness phase)."""
        edges: list[tuple[float, int, FaultSpec]] = []
        for spec in self.specs:
            if spec.end <= spec.start:
                continue  # [start, end) is empty (an end sorts before a start at one instant)
            edges.append((spec.start, 1, spec))
            if spec.end < faults_end:
                edges.append((spec.end, 0, spec))
        edges.sort(key=lambda e: (e[0], e[1]))
        for at, starting, spec in edges:
            if at >= faults_end:
                break
            await self.clock.sleep_until(at)
            if starting:
                self._start(spec)
            else:
                self._end(spec)
        await self.clock.sleep_until(faults_end)
        self.stop_all()

    def stop_all(self) -> None:
        for spec in list(self.active):
            self._end(spec)
        self.stopped = True
        for instance in self.cluster.instances:
            instance.resume()
        self.record("nemesis.stop")

    def _start(self, spec: FaultSpec) -> None:
        self.active.append(spec)
        self.record(
            "fault.start",
            kind=spec.kind,
            probability=spec.probability,
            value_s=spec.value_s,
            target=spec.target,
        )
        self._apply()
        if spec.kind == "pause":
            instance = self.cluster.by_name(spec.target)
            if instance is not None:
                instance.pause()
        elif spec.kind == "redis_restart" and self.redis is not None and self.task_group:
            self.task_group.start_soon(self.redis.restart, spec.value_s)

    def _end(self, spec: FaultSpec) -> None:
        if spec in self.active:
            self.active.remove(spec)
            self.record("fault.end", kind=spec.kind, target=spec.target)
            self._apply()
            if spec.kind == "pause" and not self._has("pause", spec.target):
                instance = self.cluster.by_name(spec.target)
                if instance is not None:
                    instance.resume()

    def _has(self, kind: str, target: str | None = None) -> bool:
        return any(s.kind == kind and (target is None or s.target == target) for s in self.active)

    def _strongest(self, kind: str) -> FaultSpec | None:
        specs = [s for s in self.active if s.kind == kind]
        return max(specs, key=lambda s: s.probability) if specs else None

    def _apply(self) -> None:
        """Project the active specs onto the fakes' mutable fault settings."""
        sf, wp = self.stripe_faults, self.webhook_policy
        latency = self._strongest("stripe_latency")
        sf.latency_spike_probability = latency.probability if latency else 0.0
        sf.latency_spike_s = latency.value_s if latency else 0.0
        sf.error_5xx_probability = _p(self._strongest("stripe_errors"))
        sf.error_5xx_after_execution_probability = _p(
            self._strongest("stripe_errors_after_execution")
        )
        sf.connection_error_probability = _p(self._strongest("stripe_connection_errors"))
        sf.lost_response_probability = _p(self._strongest("stripe_lost_response"))
        sf.outage = self._has("stripe_outage")
        slow = [s.value_s for s in self.active if s.kind == "stripe_slow_execution"]
        sf.processing_s = max(slow, default=0.0)
        rates = [s.rate for s in self.active if s.kind == "stripe_rate_limit"]
        sf.rate_limit_per_s = min(rates) if rates else None  # the tightest limit
        wp.duplicate_probability = _p(self._strongest("webhook_duplicates"))
        jitters = [s.value_s for s in self.active if s.kind == "webhook_reorder"]
        wp.reorder_jitter_s = max(jitters, default=0.0)  # the widest jitter
        if self.redis is not None:
            redis_latency = self._strongest("redis_latency")
            self.redis.set_latency(_p(redis_latency), redis_latency.value_s if redis_latency else 0)

    # ---- per-event decisions, consulted by the fakes and the store observer

    def webhook_fails(self) -> bool:
        spec = self._strongest("webhook_failures")
        return spec is not None and self.rng.random() < spec.probability

    def email_fails(self) -> bool:
        spec = self._strongest("email_outage")
        return spec is not None and self.rng.random() < spec.probability

    async def before_store_call(self, instance: Instance, collection: str, op: str) -> None:
        """Store latency, slow handlers, pauses and crash points, at one engine store call."""
        await instance.stall_if_paused()
        if op in WRITE_OPS:
            await self._lease_pause(instance)
        for spec in self.active:
            if spec.kind == "store_latency" and self.rng.random() < spec.probability:
                await virtual_time.sleep(spec.value_s * self.rng.random())
            elif self._draws(spec, "slow_handler", instance):
                self.record(
                    "fault.slow",
                    instance=instance.name,
                    coll=collection,
                    op=op,
                    delay_s=spec.value_s,
                )
                await virtual_time.sleep(spec.value_s)
            elif self._draws(spec, "crash", instance):
                await self._crash(instance, f"crash point before {collection}.{op}")

    async def before_side_effect(self, instance: Instance, call: str) -> None:
        """Crash points before a grant or a receipt (simulator/side_effects.py): the store
        already says done, the world not yet."""
        for spec in self.active:
            if self._draws(spec, "crash_before_side_effect", instance):
                await self._crash(instance, f"{side_effects.CRASH_REASON} {call}")
                return

    def _draws(self, spec: FaultSpec, kind: str, instance: Instance) -> bool:
        """`spec` is of `kind`, aimed at `instance`, and fires this time (a draw only then)."""
        return (
            spec.kind == kind
            and spec.target in (instance.name, "any")
            and self.rng.random() < spec.probability
        )

    async def _crash(self, instance: Instance, reason: str) -> None:
        instance.crash(reason)
        self._restart_later(instance)
        await anyio.lowlevel.checkpoint()  # the cancelled request stops here

    async def _lease_pause(self, instance: Instance) -> None:
        """Stall a lock holder at its first write after the grant, past its lease."""
        holding = HOLDING.get()
        if holding is None or holding.wrote:
            return
        specs = [
            s for s in self.active if s.kind == "lease_pause" and s.target in (instance.name, "any")
        ]
        if not specs:
            return
        holding.wrote = True
        spec = max(specs, key=lambda s: s.probability)
        if self.rng.random() < spec.probability:
            self.record(
                "fault.lease_pause",
                instance=instance.name,
                key=holding.lease.key,
                token=holding.lease.token,
                delay_s=spec.value_s,
            )
            await virtual_time.sleep(spec.value_s)

    def _restart_later(self, instance: Instance) -> None:
        if self.task_group is not None:
            self.task_group.start_soon(self._restart, instance)

    async def _restart(self, instance: Instance) -> None:
        """Bring a crashed instance back after RESTART_AFTER_S, like an orchestrator would."""
        await virtual_time.sleep(RESTART_AFTER_S)
        if not instance.up and not instance.retired:
            instance.start()


def _p(spec: FaultSpec | None) -> float:
    return spec.probability if spec else 0.0
