"""How Stripe delivers webhook events: timeout, retry schedule, window, and delivery faults.

Mutable on purpose: the nemesis flips the fault fields during a run, and delivery reads them
afresh at every decision.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from typing import Any

DAY_S = 24 * 3600.0
DUPLICATE_KINDS = ("immediate", "concurrent", "late")


@dataclass
class WebhookPolicy:
    """Defaults are live mode: exponential back-off for up to three days."""

    #: an attempt not answered within this counts as failed (Stripe: about 30 s)
    delivery_timeout_s: float = 30.0
    #: retries stop once the next one would fall later than this after the event was created
    retry_window_s: float = 3 * DAY_S
    first_retry_s: float = 60.0
    backoff: float = 2.0
    max_retry_delay_s: float = 12 * 3600.0
    #: attempts in all (first delivery included); None = until the window closes
    max_attempts: int | None = None
    #: each retry delay is scaled by uniform(1 - j, 1 + j)
    retry_jitter: float = 0.1
    #: wait before the first attempt of each event
    delivery_delay_s: float = 0.0
    # ---- faults (off by default)
    #: an extra delivery of the same event, of a kind drawn with `duplicate_weights`:
    #: "immediate" right after the first attempt answers, "concurrent" alongside it, "late"
    #: after uniform(*duplicate_late_s), typically once the event was already acknowledged
    duplicate_probability: float = 0.0
    duplicate_weights: dict[str, float] = field(
        default_factory=lambda: {kind: 1.0 for kind in DUPLICATE_KINDS}
    )
    duplicate_late_s: tuple[float, float] = (60.0, 3600.0)
    #: extra uniform(0, j) delay before each event's first attempt, so events overtake each other
    reorder_jitter_s: float = 0.0
    #: an attempt fails on the way (never reaches the endpoint)
    failure_probability: float = 0.0
    #: no attempt starts while paused (Stripe-side delivery delay); retries are not consumed
    paused: bool = False
    #: how often a paused delivery looks at `paused` again when it was set directly
    pause_poll_s: float = 5.0

    @classmethod
    def live(cls, **overrides: Any) -> WebhookPolicy:
        return replace(cls(), **overrides)

    @classmethod
    def test_mode(cls, **overrides: Any) -> WebhookPolicy:
        """Test mode: three retries over a few hours (15 min, 1 h, 4 h)."""
        preset = cls(
            retry_window_s=6 * 3600.0,
            first_retry_s=900.0,
            backoff=4.0,
            max_retry_delay_s=4 * 3600.0,
            max_attempts=4,
        )
        return replace(preset, **overrides)

    def compressed(self, factor: float) -> WebhookPolicy:
        """The same policy with its retry schedule `factor` times faster (wall-clock runs cannot
        wait three days): back-off delays, window and late-duplicate spread shrink; the
        delivery timeout and the fault magnitudes stay as they are (they are about the service)."""
        if factor <= 0:
            raise ValueError(f"retry compression must be > 0, got {factor}")
        low, high = self.duplicate_late_s
        return replace(
            self,
            first_retry_s=self.first_retry_s / factor,
            max_retry_delay_s=self.max_retry_delay_s / factor,
            retry_window_s=self.retry_window_s / factor,
            duplicate_late_s=(low / factor, high / factor),
        )

    def retry_delay(self, failed_attempts: int, rng: random.Random) -> float:
        """Delay after the `failed_attempts`-th failure."""
        delay = min(
            self.first_retry_s * self.backoff ** (failed_attempts - 1), self.max_retry_delay_s
        )
        if self.retry_jitter > 0:
            delay *= rng.uniform(1 - self.retry_jitter, 1 + self.retry_jitter)
        return delay

    def duplicate_kind(self, rng: random.Random) -> str:
        kinds = [k for k in DUPLICATE_KINDS if self.duplicate_weights.get(k, 0.0) > 0]
        if not kinds:
            return "immediate"
        return rng.choices(kinds, weights=[self.duplicate_weights[k] for k in kinds])[0]
