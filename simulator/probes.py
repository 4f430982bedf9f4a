"""Forged webhooks the harness posts during every run, to check `signature_enforced`.

Each probe is a copy of a real event, forged one way: signed with the wrong secret, with a stale
timestamp, with no signature, with a body tampered after signing (marked paid), or correctly
signed but not an event at all. A correct engine answers 400 to each and writes nothing.

A probe that finds no instance up (the only one crashed, stopped or between deploys) is posted
again every few seconds until one answers: left "unreachable" it would prove nothing.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

from simulator import virtual_time
from simulator.requests import request_scope
from simulator.topology import Cluster, InstanceCrashed, InstanceDown

#: a post that found no instance up is retried this often, this far apart (a crashed instance
#: restarts after 5 s, a rolling deploy's gap is shorter): a minute in all
UNREACHABLE_RETRIES = 12
UNREACHABLE_WAIT_S = 5.0

VARIANTS = ("wrong_secret", "stale", "unsigned", "tampered", "not_an_event")


class SignatureProbe:
    def __init__(
        self,
        fake: Any,
        cluster: Cluster,
        rng: random.Random,
        record: Callable[..., Any],
        *,
        tolerance_s: float,
        probability: float = 0.1,
    ) -> None:
        self.fake = fake
        self.cluster = cluster
        self.rng = rng
        self.record = record
        self.tolerance_s = tolerance_s
        self.probability = probability
        self._types_probed: set[str] = set()
        self._count = 0

    async def ensure_probed(self) -> None:
        """A run with no webhook events still gets one forgery: a made-up paid session."""
        if self._count == 0:
            await self.probe(
                {
                    "id": "evt_probe_000001",
                    "object": "event",
                    "type": "checkout.session.completed",
                    "data": {
                        "object": {
                            "id": "cs_probe_000001",
                            "object": "checkout.session",
                            "payment_status": "paid",
                            "status": "complete",
                        }
                    },
                }
            )

    def wants(self, event: dict[str, Any]) -> bool:
        """Every event type is probed once, then a sample of events."""
        first = event["type"] not in self._types_probed
        self._types_probed.add(event["type"])
        return first or self.rng.random() < self.probability

    async def probe(self, event: dict[str, Any]) -> None:
        variant = VARIANTS[self._count % len(VARIANTS)]
        self._count += 1
        probe_id = f"probe{self._count}"
        payload, header = self._forge(event, variant)
        status = await post_webhook(self.cluster, probe_id, payload, header)
        self.record(
            "probe.forged",
            probe=probe_id,
            variant=variant,
            event_id=event["id"],
            session_id=self.fake.session_id_of(event),
            status=status,
        )

    def _forge(self, event: dict[str, Any], variant: str) -> tuple[bytes, str | None]:
        payload = self.fake.event_payload(event)
        now = int(self.fake.clock.now())
        if variant == "wrong_secret":
            return payload, self.fake.sign(payload, secret="whsec_forged")
        if variant == "stale":
            return payload, self.fake.sign(payload, timestamp=now - int(self.tolerance_s) - 60)
        if variant == "unsigned":
            return payload, None
        if variant == "tampered":
            body = json.loads(payload)
            body["type"] = "checkout.session.completed"
            body["data"]["object"]["payment_status"] = "paid"
            return json.dumps(body).encode(), self.fake.sign(payload)
        junk = json.dumps({"id": event["id"], "forged": True}).encode()
        return junk, self.fake.sign(junk)


async def post_webhook(
    cluster: Cluster,
    request: str,
    payload: bytes,
    header: str | None,
    *,
    sign: Callable[[bytes], str] | None = None,
) -> int | str:
    """The engine's answer to a posted webhook, under request id `request`; posted again while
    no instance is up, signed afresh by `sign` if given (as Stripe signs each attempt).
    "unreachable" only if none came up within the retries; "error: ..." if an exception
    escaped the engine (no_engine_exception has it from the history)."""
    for attempt in range(UNREACHABLE_RETRIES):
        if attempt:
            await virtual_time.sleep(UNREACHABLE_WAIT_S)
            if sign is not None:
                header = sign(payload)
        with request_scope(request):
            try:
                _, status = await cluster.call(lambda e, h=header: e.handle_webhook(payload, h))
                return int(status)
            except (InstanceDown, InstanceCrashed):
                continue
            except Exception as exc:  # the engine blew up: Stripe sees a 500
                return f"error: {type(exc).__name__}"
    return "unreachable"
