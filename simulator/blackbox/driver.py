"""One black-box run: a scenario's customers, Stripe and faults against a service over HTTP.

The same parts as a simulated run (simulator/run.py), in wall-clock time: the workload's
customers (simulator/workload.py) click through the service's HTTP API (target.py) and pay on
paysim's fake Stripe, which runs in this process as an HTTP server the service points at
(stripe_service.py) and POSTs it signed webhooks on a compressed retry schedule; the nemesis
switches the scenario's Stripe and webhook faults; forged webhooks probe its signature checks.
The service's state is read from its state route or MongoDB (state.py), its fulfilments and
receipts arrive at paysim's sinks (sinks.py). The history, final state and ledgers are written
as in simulation, so the same checkers, reports and `paysim check` judge it.

Faults that need control of the service (crash, pause, slow handlers, store latency, lease
pauses) act only on a service paysim started itself (`--serve`): elsewhere they are off, and
the history's `run.start` line (and the report) says which faults were on and which off.
Sessions still open when the customers are done are expired at once (Stripe would after
`session_ttl`, at least 30 minutes: too long to wait), so that their seats must come back.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import trio

from reference_impl.lock_stats import LockStats
from simulator.blackbox.served import ProgramSeed, ServeOptions, reconcile_all, serve_engine
from simulator.blackbox.serving import serve_asgi
from simulator.blackbox.sinks import SinkApp, smtp_sink
from simulator.blackbox.state import (
    BadState,
    JsonStateRoute,
    MongoState,
    StatePoller,
    StateSource,
)
from simulator.blackbox.stripe_service import StripeServiceConfig, serve_fake_stripe
from simulator.blackbox.target import HttpTarget
from simulator.clock import SimClock
from simulator.engine_errors import EngineErrors
from simulator.engines import resolve
from simulator.history import History
from simulator.probes import SignatureProbe
from simulator.randomness import RandomStreams
from simulator.run import RunResult, ledger_tables, lock_event_recorder, write_json_lists
from simulator.scenario import Scenario
from simulator.services import FakeEmail, RecordingFulfilment
from simulator.topology import Cluster, Instance
from simulator.workload import Clients, plan_arrivals

#: fault kinds that act on the service itself: only on a service paysim started (--serve)
CONTROL_KINDS = frozenset(
    {
        "crash",
        "crash_before_side_effect",
        "pause",
        "slow_handler",
        "store_latency",
        "lease_pause",
        "redis_restart",
        "redis_latency",
    }
)
#: a declined customer's pause before the second card, wall-clock seconds (simulation: 20 s);
#: a bank debit settles after the scenario's `customers.settle_after_s`
DECLINE_RETRY_S = 1.0


class BlackboxError(Exception):
    """The run could not be set up (an unreachable target, a scenario black-box mode cannot
    play): one line, exit code 2."""


@dataclass(frozen=True)
class Target:
    """What `paysim blackbox` drives: a URL (`--target`), or an engine it serves (`--serve`)."""

    url: str | None = None
    serve: str | None = None
    #: the service's MongoDB (`--state mongodb://host/db`); None: its JSON state route
    state_uri: str | None = None
    #: how a served engine sends receipts to paysim's sinks: "http" or "smtp"
    receipts: str = "http"
    #: ports of the fake Stripe and the HTTP sink (0: free ones); a service started on its own
    #: is configured with them before the run (its Stripe API base, its sink URL)
    stripe_port: int = 0
    sink_port: int = 0

    @property
    def label(self) -> str:
        return f"serve:{self.serve}" if self.serve else str(self.url)

    def replay(self, scenario_path: str, seed: int) -> str:
        import shlex

        where = f"--serve {shlex.quote(self.serve)}" if self.serve else f"--target {self.url}"
        if self.state_uri:
            where += f" --state {shlex.quote(self.state_uri)}"
        if self.stripe_port:
            where += f" --stripe-port {self.stripe_port}"
        if self.sink_port:
            where += f" --sink-port {self.sink_port}"
        return f"paysim blackbox {shlex.quote(scenario_path)} {where} --seed {seed}"


def faults_split(scenario: Scenario, target: Target) -> tuple[list[str], list[str]]:
    """Fault kinds of the scenario that are on, and those off (they need control of the target)."""
    kinds = sorted({f.kind for f in scenario.faults})
    if target.serve:
        return kinds, []
    return [k for k in kinds if k not in CONTROL_KINDS], [k for k in kinds if k in CONTROL_KINDS]


def played(scenario: Scenario, target: Target) -> Scenario:
    """The scenario as this target can play it: faults that need control of it removed."""
    on, _ = faults_split(scenario, target)
    return replace(scenario, faults=tuple(f for f in scenario.faults if f.kind in on))


def blackbox_run(scenario: Scenario, seed: int, target: Target, out_dir: Path) -> RunResult:
    """Run `scenario` once against `target`, writing the run's files into `out_dir`."""
    if scenario.preload:
        raise BlackboxError(
            f"scenario {scenario.name}: preload: black-box mode cannot write into a running "
            "service's store (simulation only)"
        )
    factory = resolve(target.serve) if target.serve else None
    out_dir.mkdir(parents=True, exist_ok=True)
    run = _BlackboxRun(scenario, seed, target, out_dir, factory)
    started = time.perf_counter()
    trio.run(run.main)
    return run.result(time.perf_counter() - started)


class _Customer:
    """The fake Stripe's hosted Checkout page as the workload's customers use it, with
    wall-clock pauses; a session id the service made up is a payment that cannot happen."""

    def __init__(self, fake: Any, record: Callable[..., Any]) -> None:
        self.fake, self.record = fake, record

    async def customer_pay(self, session_id: str, flow: str = "card", **options: Any) -> bool:
        """As the workload asks (its scenario's `settle_after_s`, ...), with a wall-clock pause
        before a declined customer's second card."""
        try:
            return bool(
                await self.fake.customer_pay(
                    session_id, flow=flow, retry_after_s=DECLINE_RETRY_S, **options
                )
            )
        except KeyError:
            self.record("customer.unknown_session", session_id=session_id)
            return False


def _remote(target: HttpTarget, rng: Any) -> Cluster:
    """The service as the workload's load balancer sees it: one instance that is always up
    (whether it answers is the service's business)."""
    instance = Instance("target", lambda _: None, lambda _: target, _no_record)  # type: ignore[arg-type,return-value]
    instance.start()
    return Cluster([instance], "round_robin", rng)


def _no_record(type: str, **fields: Any) -> None:
    return None


class _BlackboxRun:
    def __init__(
        self, scenario: Scenario, seed: int, target: Target, out_dir: Path, factory: Any
    ) -> None:
        self.sc = scenario
        self.seed = seed
        self.target = target
        self.out_dir = out_dir
        self.factory = factory
        self.streams = RandomStreams(seed)
        self.history: History | None = None
        self.quiescent = False
        self.elapsed = 0.0
        self.lock_stats = LockStats(on_event=lock_event_recorder(self.record))
        #: exceptions escaping the served engine's methods (--serve only: a service over HTTP
        #: shows its bugs as 5xx answers, recorded as op.info)
        self.engine_errors = EngineErrors(lambda: self.clock.elapsed())
        self.on, self.off = faults_split(scenario, target)

    def record(self, type: str, **fields: Any) -> None:
        """Into the history once it is open (setting up records nothing worth keeping)."""
        if self.history is not None:
            self.history.record(type, **fields)

    async def main(self) -> None:
        sc, api = self.sc, self.sc.blackbox
        # the run's clock starts with the workload (_drive); until then, with the servers
        self.clock = SimClock(epoch=time.time(), origin=trio.current_time())
        async with AsyncExitStack() as stack:
            http = await stack.enter_async_context(
                httpx.AsyncClient(timeout=httpx.Timeout(api.request_timeout_s))
            )
            stripe = await stack.enter_async_context(
                serve_fake_stripe(
                    StripeServiceConfig(
                        port=self.target.stripe_port,
                        scenario=played(sc, self.target),
                        retry_compression=api.webhook_speedup,
                        seed=self.seed,
                        start_faults=False,
                        record=self.record,
                    )
                )
            )
            self.stripe = stripe
            self.fulfilment = RecordingFulfilment(instance="target", record=self.record)
            self.email = FakeEmail(record=self.record, fail=stripe.nemesis.email_fails)
            sink_url = await stack.enter_async_context(
                serve_asgi(SinkApp(self.fulfilment, self.email), port=self.target.sink_port)
            )
            self.served_cluster: Cluster | None = None
            if self.factory is not None:
                smtp = None
                if self.target.receipts == "smtp":
                    smtp = await stack.enter_async_context(smtp_sink(self.email))
                served = await stack.enter_async_context(
                    serve_engine(
                        self.factory,
                        ServeOptions(
                            stripe_url=stripe.base_url,
                            webhook_secret=stripe.config.webhook_secret,
                            config=sc.engine_config,
                            programs=tuple(
                                ProgramSeed(p.id, p.class_rep_limit, p.price_cents)
                                for p in sc.on_sale()
                            ),
                            instances=sc.topology.instances,
                            max_network_retries=sc.stripe_max_network_retries,
                            reconcile_every_s=sc.durations.reconcile_every_s,
                            sink_url=sink_url,
                            smtp=smtp,
                        ),
                        record=self.record,
                        before_store_call=stripe.nemesis.before_store_call,
                        before_side_effect=stripe.nemesis.before_side_effect,
                        lock_stats=self.lock_stats,
                        errors=self.engine_errors,
                    )
                )
                stripe.nemesis.cluster = self.served_cluster = served.cluster
                url = served.url
            else:
                assert self.target.url is not None
                url = self.target.url.rstrip("/")
                await self._reset(http, url)
            self.delivery = stripe.deliver_to(url + api.webhook_path)
            try:
                source: StateSource = (
                    MongoState(self.target.state_uri, api.state)
                    if self.target.state_uri
                    else JsonStateRoute(url + api.state_path, http)
                )
            except BadState as exc:
                raise BlackboxError(f"--state: {exc}") from None
            stack.push_async_callback(source.aclose)
            await self._drive(url, http, source)

    async def _reset(self, http: httpx.AsyncClient, url: str) -> None:
        """An empty service with the scenario's programs, through its reset route."""
        api = self.sc.blackbox
        if not api.reset_path:
            return
        body = {
            "programs": [
                {"id": p.id, "class_rep_limit": p.class_rep_limit, "price_cents": p.price_cents}
                for p in self.sc.on_sale()
            ]
        }
        try:
            response = await http.post(url + api.reset_path, json=body)
        except httpx.HTTPError as exc:
            raise BlackboxError(f"--target {url}: unreachable ({type(exc).__name__})") from None
        if response.status_code != 200:
            raise BlackboxError(
                f"--target {url}: POST {api.reset_path} answered HTTP {response.status_code}"
            )

    async def _drive(self, url: str, http: httpx.AsyncClient, source: StateSource) -> None:
        sc, api = self.sc, self.sc.blackbox
        clock = SimClock(epoch=time.time(), origin=trio.current_time())
        self.clock = clock
        self.history = History(self.out_dir / "history.jsonl", clock)
        record = self.history.record
        record(
            "run.start",
            scenario=sc.name,
            seed=self.seed,
            engine=self.target.label,
            programs=[{"id": p.id, "class_rep_limit": p.class_rep_limit} for p in sc.on_sale()],
            mode="blackbox",
            clock="wall",  # as a wall-clock simulated run says it (charts label their axes by it)
            target=url,
            faults_on=self.on,
            faults_off=self.off,
        )
        target = HttpTarget(url, api, http)
        self.cluster = _remote(target, self.streams.stream("balancer"))
        self.poller = StatePoller(source, record, every_s=api.poll_every_s)
        if not await self.poller.poll_once():
            raise BlackboxError(f"{url}: cannot read the service's state ({source})")
        probe = SignatureProbe(
            self.stripe.fake,
            self.cluster,
            self.streams.stream("probes"),
            record,
            tolerance_s=sc.engine_config.webhook_tolerance,
        )
        self.clients = Clients(
            sc,
            self.cluster,
            _Customer(self.stripe.fake, record),
            record,
            self.streams.stream("customers"),
            redirects=True,
            clock=clock,
        )
        async with trio.open_nursery() as nursery:
            self.stripe.fake.subscribe(
                lambda event: nursery.start_soon(probe.probe, event) if probe.wants(event) else None
            )
            nursery.start_soon(self.poller.run)
            faults_done = trio.Event()
            nursery.start_soon(self._faults, faults_done)
            await self.clients.run(plan_arrivals(sc, self.streams.stream("workload")))
            await clock.sleep_until(sc.durations.workload_s)
            with trio.move_on_after(5.0):  # the nemesis' own clock started a moment later
                await faults_done.wait()
            await self._liveness(probe)
            nursery.cancel_scope.cancel()
        await self.poller.poll_once()
        self.elapsed = clock.elapsed()
        self._snapshot()
        record("run.end", quiescent=self.quiescent, counts=self.counts())
        self.history.close()

    async def _faults(self, done: trio.Event) -> None:
        try:
            await self.stripe.run_faults()
        finally:
            done.set()

    async def _liveness(self, probe: SignatureProbe) -> None:
        """Faults off; open sessions expire; wait for deliveries to finish and the state to
        settle, within `durations.liveness_s` (wall-clock seconds)."""
        sc, api = self.sc, self.sc.blackbox
        assert self.history is not None
        record = self.history.record
        if not self.stripe.nemesis.stopped:
            self.stripe.nemesis.stop_all()
        record("liveness.start")
        if self.served_cluster is not None:
            for instance in self.served_cluster.instances:
                if not instance.up and not instance.retired:
                    instance.start()
        await probe.ensure_probed()
        deadline = self.clock.elapsed() + sc.durations.liveness_s
        while self.clock.elapsed() < deadline:
            for session in list(self.stripe.fake.sessions.values()):
                if session.status == "open":
                    self.stripe.fake.expire_now(session.id)
            if self.served_cluster is not None:
                await reconcile_all(self.served_cluster, record)
            idle = await self.delivery.wait_idle(
                min(1.0, max(0.0, deadline - self.clock.elapsed()))
            )
            await self.poller.poll_once()
            settled = trio.current_time() - self.poller.changed_at >= api.settle_s
            if (
                idle
                and settled
                and self._open_sessions() == 0
                and self.stripe.fake.executing == 0  # a slow create may yet make a session
                and self.poller.errors == 0
            ):
                self.quiescent = True
                break
            await trio.sleep(api.poll_every_s)
        record(
            "liveness.end",
            quiescent=self.quiescent,
            outstanding_webhooks=self.delivery.outstanding(),
            open_sessions=self._open_sessions(),
        )

    def _open_sessions(self) -> int:
        return sum(1 for s in self.stripe.fake.sessions.values() if s.status == "open")

    def counts(self) -> dict[str, Any]:
        fake = self.stripe.fake
        return {
            "operations": dict(self.clients.counts),
            "sessions": len(fake.sessions),
            "events": len(fake.events),
            "fulfilments": len(self.fulfilment.grants),
            "receipts": len(self.email.delivered),
            "refunds": len(fake.refunds),
            "webhook_attempts": self.delivery.stats.attempts,
        }

    def _snapshot(self) -> None:
        state = self.poller.final_state()
        write_json_lists(
            self.out_dir / "final_state.json",
            {name: (lambda rows=rows: iter(rows)) for name, rows in state.items()},
        )
        write_json_lists(
            self.out_dir / "ledgers.json",
            ledger_tables(self.stripe.fake, self.fulfilment, self.email),
        )

    def result(self, wall_s: float) -> RunResult:
        assert self.history is not None
        return RunResult(
            scenario=self.sc.name,
            seed=self.seed,
            engine=self.target.label,
            quiescent=self.quiescent,
            history_sha256=self.history.sha256(),
            history_lines=self.history.seq,
            virtual_s=self.elapsed,
            wall_s=wall_s,
            counts=self.counts(),
            lock_wait_ms=self.lock_stats.report(),
            seed_lock_stats=None,
            engine_errors=self.engine_errors.as_list(),
            out_dir=self.out_dir,
        )
