"""At-least-once webhook delivery, as Stripe does it: signed at each attempt, retried with back-off
until a 2xx or the end of the retry window, with duplicates and reordering on demand.

Every attempt runs in a task of its own. Stripe stops waiting after `delivery_timeout_s` and
schedules the retry while the slow attempt may still be running at the endpoint, so one event
can be in the engine twice at once, as it can in production.

The endpoint is the transport port, `async (payload, signature_header) -> HTTP status`: an
in-process call into the engine in simulation, a signed POST to a service's URL in black-box
mode (simulator/blackbox/webhook_http.py); the schedule above is the same for both.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from simulator import virtual_time
from simulator.fake_stripe.fake import FakeStripe
from simulator.fake_stripe.faults import chance
from simulator.fake_stripe.webhook_policy import WebhookPolicy
from simulator.tasks import Spawner

#: the transport port: deliver one attempt, answer the endpoint's status code (raise on failure)
Endpoint = Callable[[bytes, str], Awaitable[int]]


@dataclass
class DeliveryStats:
    events: int = 0
    #: endpoint calls started, duplicates included
    attempts: int = 0
    #: events answered 2xx within the timeout
    acknowledged: int = 0
    #: scheduled attempts that failed: non-2xx, error or timeout
    failed_attempts: int = 0
    timeouts: int = 0
    errors: int = 0
    given_up: int = 0
    duplicates_sent: int = 0
    #: answers that came after Stripe had stopped waiting (ignored, as at Stripe)
    late_responses: int = 0
    #: attempts started while another attempt of the same event was still running
    overlapping_attempts: int = 0


@dataclass
class _Tracked:
    event: dict[str, Any]
    session_id: str | None
    created: float
    attempts: int = 0
    in_flight: int = 0
    done: bool = False
    #: the event's bytes, serialised at the first attempt (every attempt sends the same body)
    payload: bytes | None = None


@dataclass
class _Attempt:
    number: int
    duplicate: str | None
    answered: trio.Event = field(default_factory=trio.Event)
    status: int | None = None
    error: str | None = None
    abandoned: bool = False


class WebhookDelivery:
    def __init__(
        self,
        fake: FakeStripe,
        endpoint: Endpoint,
        rng: random.Random,
        task_group: Spawner,
        *,
        policy: WebhookPolicy | None = None,
        record: Callable[..., Any] | None = None,
    ) -> None:
        self.policy = policy if policy is not None else WebhookPolicy()
        self.stats = DeliveryStats()
        self._fake = fake
        self._endpoint = endpoint
        self._rng = rng
        self._task_group = task_group
        self._record = record or fake.record
        self._outstanding = 0
        self._in_flight = 0  # running attempts plus scheduled late duplicates
        self._changed = trio.Event()
        self._resumed = trio.Event()
        fake.subscribe(self.deliver)

    # ---- public

    def deliver(self, event: dict[str, Any]) -> None:
        """Start delivering `event` (called for every new event of the fake)."""
        tracked = _Tracked(event, self._fake.session_id_of(event), trio.current_time())
        self._outstanding += 1
        self.stats.events += 1
        self._task_group.start_soon(self._run, tracked)

    def outstanding(self) -> int:
        """Events neither acknowledged nor given up."""
        return self._outstanding

    def in_flight(self) -> int:
        return self._in_flight

    def idle(self) -> bool:
        return self._outstanding == 0 and self._in_flight == 0

    async def wait_idle(self, timeout_s: float) -> bool:
        """True once nothing is outstanding or in flight (late duplicates included)."""
        with trio.move_on_after(timeout_s):
            while not self.idle():
                await self._changed.wait()
        return self.idle()

    def pause(self) -> None:
        self.policy.paused = True

    def resume(self) -> None:
        self.policy.paused = False
        self._resumed.set()
        self._resumed = trio.Event()

    # ---- one event

    async def _run(self, tracked: _Tracked) -> None:
        policy = self.policy
        delay = policy.delivery_delay_s
        if policy.reorder_jitter_s > 0:
            delay += self._rng.uniform(0, policy.reorder_jitter_s)
        if delay > 0:
            await virtual_time.sleep(delay)
        duplicate = None
        if chance(self._rng, self.policy.duplicate_probability):
            duplicate = self.policy.duplicate_kind(self._rng)
        while True:
            await self._wait_unpaused()
            tracked.attempts += 1
            attempt = self._start(tracked, tracked.attempts, None)
            if duplicate == "concurrent":
                self._start(tracked, tracked.attempts, duplicate)
            ok = await self._outcome(tracked, attempt)
            if duplicate == "immediate":
                self._start(tracked, tracked.attempts, duplicate)
            elif duplicate == "late":
                self._in_flight += 1
                self._task_group.start_soon(self._late_duplicate, tracked)
            duplicate = None
            if ok:
                self.stats.acknowledged += 1
                self._fake.delivered(tracked.event["id"])
                self._record(
                    "webhook.acknowledged",
                    event_id=tracked.event["id"],
                    attempts=tracked.attempts,
                    session_id=tracked.session_id,
                )
                break
            self.stats.failed_attempts += 1
            retry_in = self._next_retry(tracked)
            if retry_in is None:
                self.stats.given_up += 1
                self._record(
                    "webhook.given_up",
                    event_id=tracked.event["id"],
                    event_type=tracked.event["type"],
                    attempts=tracked.attempts,
                    session_id=tracked.session_id,
                )
                break
            await virtual_time.sleep(retry_in)
        tracked.done = True
        self._outstanding -= 1
        self._notify()

    async def _outcome(self, tracked: _Tracked, attempt: _Attempt) -> bool:
        with trio.move_on_after(self.policy.delivery_timeout_s):
            await attempt.answered.wait()
        if not attempt.answered.is_set():
            attempt.abandoned = True
            self.stats.timeouts += 1
            self._record(
                "webhook.response",
                event_id=tracked.event["id"],
                attempt=attempt.number,
                status="timeout",
                duplicate=None,
                late=False,
            )
            return False
        return attempt.status is not None and 200 <= attempt.status < 300

    def _next_retry(self, tracked: _Tracked) -> float | None:
        policy = self.policy
        if policy.max_attempts is not None and tracked.attempts >= policy.max_attempts:
            return None
        delay = policy.retry_delay(tracked.attempts, self._rng)
        if trio.current_time() + delay - tracked.created > policy.retry_window_s:
            return None
        return delay

    async def _late_duplicate(self, tracked: _Tracked) -> None:
        low, high = self.policy.duplicate_late_s
        try:
            await virtual_time.sleep(self._rng.uniform(low, high))
            await self._wait_unpaused()
            self._start(tracked, tracked.attempts, "late")
        finally:
            self._in_flight -= 1
            self._notify()

    # ---- one attempt

    def _start(self, tracked: _Tracked, number: int, duplicate: str | None) -> _Attempt:
        attempt = _Attempt(number, duplicate)
        self.stats.attempts += 1
        if duplicate is not None:
            self.stats.duplicates_sent += 1
        if tracked.in_flight > 0:
            self.stats.overlapping_attempts += 1
        tracked.in_flight += 1
        self._in_flight += 1
        self._record(
            "webhook.attempt",
            event_id=tracked.event["id"],
            event_type=tracked.event["type"],
            attempt=number,
            session_id=tracked.session_id,
            duplicate=duplicate,
            overlapping=tracked.in_flight > 1,
        )
        self._task_group.start_soon(self._call, tracked, attempt)
        return attempt

    async def _call(self, tracked: _Tracked, attempt: _Attempt) -> None:
        try:
            if chance(self._rng, self.policy.failure_probability):
                attempt.error = "network"
            else:
                payload = tracked.payload
                if payload is None:
                    payload = tracked.payload = self._fake.event_payload(tracked.event)
                try:
                    status = await self._endpoint(payload, self._fake.sign(payload))
                except Exception as exc:  # the endpoint crashed: Stripe sees a failure
                    attempt.error = type(exc).__name__
                else:
                    attempt.status = status if isinstance(status, int) else None
                    if attempt.status is None:
                        attempt.error = "bad_status"
        finally:
            tracked.in_flight -= 1
            self._in_flight -= 1
        if attempt.error is not None:
            self.stats.errors += 1
        if attempt.abandoned:
            self.stats.late_responses += 1
        self._record(
            "webhook.response",
            event_id=tracked.event["id"],
            attempt=attempt.number,
            status=attempt.status if attempt.error is None else "error",
            error=attempt.error,
            duplicate=attempt.duplicate,
            late=attempt.abandoned,
        )
        attempt.answered.set()
        self._notify()

    # ---- helpers

    async def _wait_unpaused(self) -> None:
        while self.policy.paused:
            with trio.move_on_after(self.policy.pause_poll_s):
                await self._resumed.wait()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()
