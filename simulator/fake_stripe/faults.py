"""What can go wrong between an engine and Stripe. All off by default; mutable during a run
(the nemesis flips fields), and read afresh by every request."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Literal

Jitter = Literal["none", "exponential", "lognormal"]


@dataclass
class StripeFaults:
    #: every request: base + jitter (exponential with mean `latency_jitter_s`, or lognormal with
    #: median `latency_jitter_s` and shape `latency_sigma`), split evenly up and down the wire
    base_latency_s: float = 0.0
    latency_jitter: Jitter = "exponential"
    latency_jitter_s: float = 0.0
    latency_sigma: float = 0.75
    #: a spike lands on the uplink (the request arrives late) or the downlink (it landed, the
    #: answer is late), chosen per request; set it past the engine's timeout
    latency_spike_probability: float = 0.0
    latency_spike_s: float = 30.0
    #: time Stripe spends executing a request; while it runs, the same idempotency key gets 409
    processing_s: float = 0.0
    #: Stripe fails the request with a 500 (saved under its idempotency key, like Stripe does)
    error_5xx_probability: float = 0.0
    #: Stripe executes a write, then answers 500 all the same (saved under its key: every retry
    #: with the key replays the 500, and only events or a later read tell what happened)
    error_5xx_after_execution_probability: float = 0.0
    #: the request never reaches Stripe
    connection_error_probability: float = 0.0
    #: Stripe executed the request, the response is lost: the client sees a connection error
    lost_response_probability: float = 0.0
    #: token bucket per account in virtual time (Stripe test mode: 25/s); None = unlimited
    rate_limit_per_s: float | None = None
    #: everything fails: 500 from Stripe's edge or a connection error, nothing is executed
    outage: bool = False


@dataclass(frozen=True)
class Latency:
    uplink_s: float
    downlink_s: float


def draw_latency(faults: StripeFaults, rng: random.Random) -> Latency:
    """Draws from `rng` only for the latency faults that are on, so turning one on leaves the
    draws of runs without it untouched."""
    total = faults.base_latency_s
    if faults.latency_jitter_s > 0 and faults.latency_jitter != "none":
        if faults.latency_jitter == "exponential":
            total += rng.expovariate(1.0 / faults.latency_jitter_s)
        else:
            total += rng.lognormvariate(math.log(faults.latency_jitter_s), faults.latency_sigma)
    uplink = downlink = total / 2
    if faults.latency_spike_probability > 0 and rng.random() < faults.latency_spike_probability:
        if rng.random() < 0.5:
            uplink += faults.latency_spike_s
        else:
            downlink += faults.latency_spike_s
    return Latency(uplink, downlink)


def chance(rng: random.Random, probability: float) -> bool:
    """A Bernoulli draw that consumes nothing when the fault is off."""
    return probability > 0 and rng.random() < probability
