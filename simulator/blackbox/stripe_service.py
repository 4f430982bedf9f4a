"""The fake Stripe served over HTTP in wall-clock time, with its webhooks, faults and ledger:
what `paysim stripe serve` runs, and the Python API a black-box driver in the same process uses.

    config = StripeServiceConfig(webhook_url="http://127.0.0.1:8000/webhook", scenario=sc,
                                 retry_compression=60)
    async with serve_fake_stripe(config) as service:
        service.base_url          # "http://127.0.0.1:PORT": the SDKs' API base
        service.fake              # the FakeStripe: .sessions, .payment_intents, .refunds,
                                  # .events, .customer_pay(...), .expire_now(...)
        service.ledger            # requests with faults, delivery attempts with status codes
        service.snapshot()        # the ledger as JSON (GET /_paysim/ledger)
        service.delivery          # the WebhookDelivery (None until a webhook URL is set)
        service.nemesis           # the scenario's fault schedule (run_faults() starts it)
        service.deliver_to(url)   # set the service's webhook URL later (events from then on)
        service.client()          # a real stripe.StripeClient over HTTP to this server
    # everything stopped and closed here, on success, failure, cancellation and Ctrl-C alike

Time: the fake reads time only from its `SimClock` and the event loop, so the code that runs in
virtual time in simulation runs here on trio's real clock (`SimClock(epoch=time.time())`).
Faults: a scenario's Stripe and webhook faults (latency, 500s, lost responses, rate limits,
duplicates, reordering, failures) follow its schedule from the moment the server starts (or
from `run_faults()` when `start_faults=False`), in wall-clock seconds, until `workload_s`.
Faults on engine instances (crash, pause, store latency, email) act only where a driver that
runs the engine itself hands `service.nemesis` its cluster and store hook; `fault_kinds()`
tells which kinds the server applies on its own.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import stripe
import trio

from simulator.blackbox.ledger import Ledger
from simulator.blackbox.serving import serve_asgi, single_error
from simulator.blackbox.stripe_http import StripeHttpApp
from simulator.blackbox.webhook_http import HttpWebhookEndpoint
from simulator.clock import SimClock
from simulator.fake_stripe import FakeStripe, StripeFaults, WebhookDelivery, WebhookPolicy
from simulator.nemesis import STRIPE_KINDS, WEBHOOK_KINDS, Nemesis
from simulator.randomness import RandomStreams
from simulator.scenario import Scenario
from simulator.topology import Cluster

DEFAULT_SECRET = "whsec_paysim"


@dataclass(frozen=True)
class StripeServiceConfig:
    host: str = "127.0.0.1"
    #: 0: a free port chosen by the OS
    port: int = 0
    #: where webhook events are POSTed; None: no endpoint yet (see `deliver_to`)
    webhook_url: str | None = None
    webhook_secret: str = DEFAULT_SECRET
    #: Stripe latency, webhook mode and delivery timeout, and the fault schedule
    scenario: Scenario | None = None
    #: Stripe's webhook retry schedule runs this many times faster
    retry_compression: float = 1.0
    #: seeds the fake's random choices (faults, duplicates); wall-clock runs do not replay
    seed: int = 1
    #: start the scenario's fault schedule when the server starts
    start_faults: bool = True
    #: every record also goes here (e.g. a driver's history): `record(type, **fields)`
    record: Callable[..., Any] | None = None


class StripeService:
    def __init__(
        self, config: StripeServiceConfig, nursery: trio.Nursery, http: httpx.AsyncClient
    ) -> None:
        sc = config.scenario
        self.config = config
        self.base_url = ""
        self.clock = SimClock(epoch=time.time(), origin=trio.current_time())
        self.ledger = Ledger(self.clock, forward=config.record)
        self._streams = RandomStreams(config.seed)
        self._nursery = nursery
        self._http = http
        live = sc is not None and sc.webhooks.mode == "live"
        self.fake = FakeStripe(
            self.clock,
            self._streams.stream("stripe"),
            nursery,
            webhook_secret=config.webhook_secret,
            faults=StripeFaults(base_latency_s=sc.stripe_latency_s if sc else 0.0),
            record=self.ledger.record,
            live_mode=live,
        )
        policy = WebhookPolicy.live() if live else WebhookPolicy.test_mode()
        if sc is not None:
            policy.delivery_timeout_s = sc.webhooks.delivery_timeout_s
        self.policy = policy.compressed(config.retry_compression)
        # every kind is scheduled: those on engine instances act once a driver that serves the
        # engine itself hands the nemesis its cluster (`nemesis.cluster`, `before_store_call`)
        self.nemesis = Nemesis(
            sc.faults if sc else (),
            self._streams.stream("faults"),
            self.ledger.record,
            self.fake.faults,
            self.policy,
            Cluster([], "round_robin", self._streams.stream("balancer")),
            self.clock,
            task_group=nursery,
            swarm=sc.swarm if sc else False,
        )
        self.delivery: WebhookDelivery | None = None
        self.app = StripeHttpApp(self.fake, nursery, self.snapshot)

    def fault_kinds(self) -> tuple[list[str], list[str]]:
        """The scenario's fault kinds this server applies on its own, and those it cannot (they
        act on engine instances, the store or Redis: only a driver that runs the engine can)."""
        kinds = (
            sorted({f.kind for f in self.config.scenario.faults}) if self.config.scenario else []
        )
        applied = [k for k in kinds if k in STRIPE_KINDS | WEBHOOK_KINDS]
        return applied, [k for k in kinds if k not in applied]

    def deliver_to(self, url: str) -> WebhookDelivery:
        """POST every event created from now on to `url` (one endpoint: a second call is an
        error, as the fake has one delivery queue)."""
        if self.delivery is not None:
            raise RuntimeError("a webhook endpoint is already set")
        endpoint = HttpWebhookEndpoint(
            url,
            self._http,
            timeout_s=self.policy.delivery_timeout_s,
            fails=self.nemesis.webhook_fails,
            record=self.ledger.record,
        )
        self.delivery = WebhookDelivery(
            self.fake,
            endpoint,
            self._streams.stream("webhooks"),
            self._nursery,
            policy=self.policy,
            record=self.ledger.record,
        )
        return self.delivery

    async def run_faults(self) -> None:
        """The scenario's fault schedule, from now, until its `workload_s` (then all off)."""
        sc = self.config.scenario
        if sc is not None:
            self.nemesis.clock = SimClock(epoch=self.clock.epoch, origin=trio.current_time())
            await self.nemesis.run(sc.durations.workload_s)

    def snapshot(self) -> dict[str, Any]:
        return self.ledger.snapshot(self.fake, self.delivery)

    def client(
        self, api_key: str = "sk_test_paysim", *, max_network_retries: int = 2
    ) -> stripe.StripeClient:
        """The official client over real HTTP to this server (its default HTTP client)."""
        return stripe.StripeClient(
            api_key,
            base_addresses={"api": self.base_url},
            max_network_retries=max_network_retries,
        )


@asynccontextmanager
async def serve_fake_stripe(config: StripeServiceConfig) -> AsyncIterator[StripeService]:
    with single_error():
        async with httpx.AsyncClient() as http, trio.open_nursery() as nursery:
            service = StripeService(config, nursery, http)
            try:
                async with serve_asgi(service.app, host=config.host, port=config.port) as url:
                    service.base_url = url
                    service.fake.checkout_url = f"{url}/_paysim/checkout/"
                    if config.webhook_url is not None:
                        service.deliver_to(config.webhook_url)
                    if config.start_faults and config.scenario is not None:
                        nursery.start_soon(service.run_faults)
                    yield service
            finally:
                service.fake.stop()
                nursery.cancel_scope.cancel()


async def run_until_cancelled(
    config: StripeServiceConfig, announce: Callable[[StripeService], None]
) -> None:
    """`paysim stripe serve`: serve until cancelled (Ctrl-C), calling `announce` once listening."""
    async with serve_fake_stripe(config) as service:
        announce(service)
        await trio.sleep_forever()
