"""One simulated run: build the world from a scenario and a seed, drive it, record everything.

Phases: the workload phase (clients and the nemesis act until `durations.workload_s`), then a
fault-free liveness phase in which Stripe keeps retrying webhooks, sessions expire and
`reconcile` runs, until the system is quiescent or `durations.liveness_s` runs out. The run
writes `history.jsonl`, `final_state.json` and `ledgers.json` for the checkers.

A scenario with `topology.locks = "redis"` always runs in wall-clock time: Redis expires leases
by its own clock, which a virtual clock cannot move, so every time in such a scenario is real
seconds (keep them short). Its history is not reproducible byte for byte.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import anyio

from reference_impl.lock_stats import LockStats
from reference_impl.ports import (
    Email,
    EngineEnv,
    EngineFactory,
    Fulfilment,
    PurchaseResult,
    StripeClientSettings,
)
from reference_impl.registry import load_factory
from reference_impl.schema import (
    PROGRAMS,
    PURCHASES,
    SEAT_HOLDS,
    SLOTS,
    WEBHOOK_DEAD_LETTERS,
    program_doc,
)
from reference_impl.seats import hold_doc
from reference_impl.seed_locks import SeedLockService
from reference_impl.store import AsyncDatabase, open_database
from simulator import tasks, virtual_time
from simulator.adversary import Adversary
from simulator.clock import SimClock
from simulator.engine_class import declared
from simulator.engine_errors import EngineErrors
from simulator.fake_stripe import (
    FakeStripe,
    StripeFaults,
    WebhookDelivery,
    WebhookPolicy,
    pretty_json,
)
from simulator.fake_stripe.spill import ObjectTable, Spill
from simulator.history import History
from simulator.ids import SequentialIds
from simulator.nemesis import Nemesis
from simulator.probes import SignatureProbe
from simulator.randomness import RandomStreams
from simulator.redis_faults import RedisFaults
from simulator.requests import request_scope
from simulator.scenario import Scenario
from simulator.scheduling import seed_scheduler
from simulator.services import FakeEmail, RecordingFulfilment
from simulator.side_effects import GuardedEmail, GuardedFulfilment
from simulator.store_observer import StoreObserver
from simulator.tested import offers_success_page
from simulator.topology import (
    Cluster,
    Instance,
    WatchedLocks,
    memory_locks_for,
    redis_locks_for,
    redis_url_for,
    run_namespace,
)
from simulator.workload import Arrival, Clients, plan_arrivals


@dataclass
class RunResult:
    scenario: str
    seed: int
    engine: str
    quiescent: bool
    history_sha256: str
    history_lines: int
    virtual_s: float
    wall_s: float
    counts: dict[str, Any]
    lock_wait_ms: dict[str, dict[str, float | int]]
    seed_lock_stats: dict[str, Any] | None
    engine_errors: list[dict[str, Any]]  # simulator/engine_errors.py
    out_dir: Path | None
    #: the built engine offers the success page, so customers' redirects raced the webhook
    success_page: bool = False
    #: kept in memory only for a run without an out dir; otherwise read from the run's files on
    #: first use (a long run's final state is as large as its store)
    _final_state: dict[str, Any] | None = field(repr=False, default=None)
    _ledgers: dict[str, Any] | None = field(repr=False, default=None)

    @property
    def final_state(self) -> dict[str, Any]:
        if self._final_state is None:
            self._final_state = self._read("final_state.json")
        return self._final_state

    @property
    def ledgers(self) -> dict[str, Any]:
        if self._ledgers is None:
            self._ledgers = self._read("ledgers.json")
        return self._ledgers

    def _read(self, name: str) -> dict[str, Any]:
        if self.out_dir is None:
            return {}
        data: dict[str, Any] = json.loads((self.out_dir / name).read_text(encoding="utf-8"))
        return data


def simulate(
    scenario: Scenario,
    seed: int,
    engine: str | EngineFactory = "reference",
    out_dir: Path | None = None,
    *,
    wall_clock: bool = False,
    extra_engines: dict[str, Callable[[], EngineFactory]] | None = None,
) -> RunResult:
    """Run `scenario` once. Same (scenario, seed, engine) → byte-identical history.

    Redis-locked scenarios run in wall-clock time whatever `wall_clock` says (module docstring).
    """
    wall_clock = wall_clock or scenario.topology.locks == "redis"
    factory = load_factory(engine, extra_engines) if isinstance(engine, str) else engine
    name = engine if isinstance(engine, str) else f"{factory.__module__}:{factory.__qualname__}"
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    world = _World(scenario, seed, factory, name, out_dir, wall_clock)
    started = time.perf_counter()
    seed_scheduler(seed)
    options: dict[str, Any] = (
        {} if wall_clock else {"clock": virtual_time.virtual_clock()}
    )
    try:
        anyio.run(world.main, backend="trio", backend_options=options)
    except BaseException:
        world.abandon()  # Ctrl-C, SIGTERM or a crash: main() never reached its own cleanup
        raise
    return world.result(time.perf_counter() - started)


class _World:
    def __init__(
        self,
        scenario: Scenario,
        seed: int,
        factory: EngineFactory,
        engine_name: str,
        out_dir: Path | None,
        wall_clock: bool,
    ) -> None:
        self.scenario = scenario
        self.seed = seed
        self.factory = factory
        self.engine_name = engine_name
        self.out_dir = out_dir
        self.wall_clock = wall_clock
        self.streams = RandomStreams(seed)
        self.quiescent = False
        self.success_page = False
        self._deliveries = 0
        self._reconciles = 0
        self._sweeping = 0  # sweeps in flight (the periodic one may be stalled by a fault)
        #: set once the liveness phase's grace is over: from then on it sweeps itself, a step
        #: apart, and the periodic loop starts no more sweeps (see `_liveness_phase`)
        self._sweeps_handed_over = False
        self.final_state: dict[str, Any] | None = None
        self.ledgers: dict[str, Any] | None = None

    def abandon(self) -> None:
        """After an interrupted run: delete its Redis keys (locks, fence counters) and flush the
        history written so far."""
        redis = getattr(self, "redis", None)
        if redis is not None:
            redis.discard()
        history = getattr(self, "history", None)
        if history is not None:
            history.close()

    async def main(self) -> None:
        sc = self.scenario
        # wall-clock runs read the real time once, here; simulated code only reads `self.clock`
        self.clock = (
            SimClock(epoch=time.time(), origin=anyio.current_time())
            if self.wall_clock
            else SimClock()
        )
        self.history = History(self.out_dir / "history.jsonl" if self.out_dir else None, self.clock)
        self.engine_errors = EngineErrors(self.clock.elapsed)
        record = self.history.record
        record(
            "run.start",
            scenario=sc.name,
            seed=self.seed,
            engine=self.engine_name,
            programs=[{"id": p.id, "class_rep_limit": p.class_rep_limit} for p in sc.on_sale()],
            # only wall-clock runs say so: a virtual-time history keeps its bytes
            **({"clock": "wall"} if self.wall_clock else {}),
        )
        self.db: AsyncDatabase = open_database(f"paysim_{self.seed}")
        for p in sc.on_sale():  # a withdrawn program is only linked to
            self.db.sync[PROGRAMS].insert_one(
                program_doc(p.id, class_rep_limit=p.class_rep_limit, price_cents=p.price_cents)
            )
        self.lock_stats = LockStats(on_event=lock_event_recorder(record))
        self.seed_lock_services: list[SeedLockService] = []
        self.redis: RedisFaults | None = None
        if sc.topology.locks == "redis":
            self.redis = RedisFaults(
                redis_url_for(sc.topology.redis_url),
                run_namespace(self.seed),
                self.streams.stream("redis"),
                record,
            )
            await self.redis.connect()
        self.fulfilment = RecordingFulfilment(record=record)
        # settled sessions, events and saved idempotent replies live on disk (spill.py)
        self.spill = Spill()
        async with tasks.open_nursery() as tg:
            self.fake = FakeStripe(
                self.clock,
                self.streams.stream("stripe"),
                tg,
                record=record,
                faults=StripeFaults(base_latency_s=sc.stripe_latency_s),
                live_mode=sc.webhooks.mode == "live",
            )
            self.fake.spill_to(self.spill)
            self.fulfilment.spill_to(self.spill)
            policy = (
                WebhookPolicy.live() if sc.webhooks.mode == "live" else WebhookPolicy.test_mode()
            )
            policy.delivery_timeout_s = sc.webhooks.delivery_timeout_s
            self.cluster = Cluster([], sc.topology.balancer, self.streams.stream("balancer"))
            self.nemesis = Nemesis(
                sc.faults,
                self.streams.stream("faults"),
                record,
                self.fake.faults,
                policy,
                self.cluster,
                self.clock,
                task_group=tg,
                swarm=sc.swarm,
                redis=self.redis,
            )
            self.email = FakeEmail(record=record, fail=self.nemesis.email_fails)
            self.email.spill_to(self.spill)
            self.delivery = WebhookDelivery(
                self.fake,
                self._webhook_endpoint,
                self.streams.stream("webhooks"),
                tg,
                policy=policy,
                record=record,
            )
            self._build_instances(tg)
            # asked of the engine the factory built: a `module:factory` function has no methods
            self.success_page = offers_success_page(self.cluster.instances[0].engine)
            self.probe = SignatureProbe(
                self.fake,
                self.cluster,
                self.streams.stream("probes"),
                record,
                tolerance_s=sc.engine_config.webhook_tolerance,
            )
            self.fake.subscribe(lambda event: self._on_event(tg, event))
            tg.start_soon(self.nemesis.run, sc.durations.workload_s)
            tg.start_soon(self._reconcile_loop)
            clients = Clients(
                sc,
                self.cluster,
                self.fake,
                record,
                self.streams.stream("customers"),
                redirects=self.success_page,
                clock=self.clock,
                timeline_rng=self.streams.stream("customer_timeline"),
                pending_page_rng=self.streams.stream("pending_page"),
            )
            self.clients = clients
            attacked = anyio.Event()
            if sc.adversary.enabled:
                tg.start_soon(self._attack, self._adversary(clients), attacked)
            else:
                attacked.set()
            preloaded = self._install_preload()
            await clients.run(plan_arrivals(sc, self.streams.stream("workload")), preloaded)
            # the attacker is a client too: its attacks are drawn inside the workload window,
            # but each may take minutes against a slow Stripe, so the last of them can come
            # after the customers'; the sweep's grace counts from whichever acts last
            if not attacked.is_set():  # (waiting on a set event would add a scheduling point)
                await attacked.wait()
            await self._liveness_phase()
            tg.cancel_scope.cancel()
        if self.redis is not None:
            await self.redis.close()
        self.virtual_s = self.clock.elapsed()
        self._snapshot()
        record("run.end", quiescent=self.quiescent, counts=self._counts())
        self.spill.close()
        self.history.close()

    # ---- wiring

    def _build_instances(self, tg: Any) -> None:
        topo = self.scenario.topology
        shared = memory_locks_for(self.factory, self.lock_stats) if topo.locks == "shared" else None
        count = topo.instances + (1 if topo.rolling_deploy else 0)
        for n in range(count):
            instance = Instance(
                f"i{n}",
                lambda inst, s=shared: self._make_env(inst, s),
                self.factory,
                self.history.record,
                errors=self.engine_errors,
            )
            self.cluster.instances.append(instance)
        for instance in self.cluster.instances[: topo.instances]:
            instance.start()
        if topo.rolling_deploy:
            tg.start_soon(self._rolling_deploy)

    def _make_env(self, instance: Instance, shared_locks: Any) -> EngineEnv:
        locks = shared_locks or self._instance_locks(instance)
        if isinstance(locks, SeedLockService):
            self.seed_lock_services.append(locks)
        if any(f.kind == "lease_pause" for f in self.scenario.faults):
            locks = WatchedLocks(locks)

        async def before_call(collection: str, op: str) -> None:
            await self.nemesis.before_store_call(instance, collection, op)

        observer = StoreObserver(
            instance=instance.name,
            record=self.history.record,
            sync_db=self.db.sync,
            before_call=before_call,
        )
        fulfilment: Fulfilment = self.fulfilment.on(instance.name)
        email: Email = self.email
        if any(f.kind == "crash_before_side_effect" for f in self.scenario.faults):

            async def before_side_effect(call: str) -> None:
                await self.nemesis.before_side_effect(instance, call)

            fulfilment = GuardedFulfilment(fulfilment, before_side_effect)
            email = GuardedEmail(email, before_side_effect)
        return EngineEnv(
            store=AsyncDatabase(self.db.sync, observer),
            locks=locks,
            stripe=self._stripe_client(),
            webhook_secret=self.fake.webhook_secret,
            fulfilment=fulfilment,
            email=email,
            clock=self.clock,
            ids=SequentialIds(f"{instance.name}g{instance.generation}x"),
            config=self.scenario.engine_config,
            instance=instance.name,
        )

    def _stripe_client(self) -> Any:
        """The engine's own SDK defaults (`stripe_client_settings`), else stripe-python's; the
        scenario's `stripe_max_network_retries` overrides the retries when set."""
        settings = declared(self.factory, "stripe_client_settings") or StripeClientSettings()
        retries = self.scenario.stripe_max_network_retries
        return self.fake.client(
            max_network_retries=settings.max_network_retries if retries is None else retries,
            timeout_s=settings.timeout_s,
        )

    def _instance_locks(self, instance: Instance) -> Any:
        if self.redis is None:
            return memory_locks_for(self.factory, self.lock_stats)
        owner = f"{instance.name}g{instance.generation}"
        return redis_locks_for(
            self.redis.client,
            namespace=self.redis.namespace,
            lease_s=self.scenario.topology.lease_s,
            stats=self.lock_stats,
            owner=owner,
            rng=self.streams.stream(f"redis-locks-{owner}"),
        )

    async def _rolling_deploy(self) -> None:
        deploy = self.scenario.topology.rolling_deploy
        assert deploy is not None
        old, new = self.cluster.instances[0], self.cluster.instances[-1]
        await virtual_time.sleep(deploy.at)
        new.start()
        self.history.record(
            "deploy.overlap", old=old.name, new=new.name, overlap_s=deploy.overlap_s
        )
        await virtual_time.sleep(deploy.overlap_s)
        old.stop()

    async def _attack(self, adversary: Adversary, done: anyio.Event) -> None:
        try:
            await adversary.run(self.scenario.durations.workload_s)
        finally:
            done.set()

    def _adversary(self, clients: Clients) -> Adversary:
        sc = self.scenario
        return Adversary(
            sc.adversary,
            self.fake,
            self.cluster,
            clients,
            self.streams.stream("adversary"),
            self.history.record,
            self.clock,
            program_id=sc.programs[0].id,
            price=sc.programs[0].price_cents,
            currency=sc.engine_config.currency,
            tolerance_s=sc.engine_config.webhook_tolerance,
        )

    def _install_preload(self) -> list[tuple[Arrival, PurchaseResult]]:
        """Pending purchases an earlier release left behind: store documents, open sessions and
        their seats, written directly (not by the engine, so not as engine writes)."""
        out = []
        now = self.clock.now()
        for n, old in enumerate(self.scenario.preload, start=1):
            purchase_id = f"pur_preload_{n:03d}"
            program = self.db.sync[PROGRAMS].find_one({"_id": old.program}) or {}
            session = self.fake.preload_session(
                amount_total=program.get("price_cents", 5000),
                expires_at=int(now + self.scenario.engine_config.session_ttl),
                client_reference_id=purchase_id,
                metadata={"purchase_id": purchase_id, "user_id": old.user_id},
                with_payment_intent=False,
            )
            doc: dict[str, Any] = {
                "_id": purchase_id,
                "user_id": old.user_id,
                "program_id": old.program,
                "class_rep": old.class_rep,
                "status": old.status,
                "stripe_session_id": session.id,
                "checkout_url": session.url,
                "session_expires_at": session.expires_at,
                "created_at": now,
                "amount": program.get("price_cents", 5000),
            }
            if old.class_rep and old.status == "pending":  # a cancelled one gave its seat back
                doc["seat_ref"] = f"seat_{purchase_id}"
                self.db.sync[PROGRAMS].update_one(
                    {"_id": old.program}, {"$inc": {"class_rep_count": 1}}
                )
                self.db.sync[SEAT_HOLDS].insert_one(
                    hold_doc(
                        doc["seat_ref"], program_id=old.program, purchase_id=purchase_id, at=now
                    )
                )
            self.db.sync[PURCHASES].insert_one(doc)
            self.db.sync[SLOTS].insert_one(
                {"_id": f"{old.user_id}:{old.program}", "purchase_id": purchase_id, "at": now}
            )
            self.history.record(
                "preload.purchase",
                id=purchase_id,
                doc={k: doc.get(k) for k in _PURCHASE_FIELDS},
                session_id=session.id,
                payment_intent=session.payment_intent,
            )
            arrival = Arrival(old.customer_at, old.user_id, old.program, old.class_rep)
            out.append((arrival, PurchaseResult(purchase_id, session.id, session.url)))
        return out

    def _on_event(self, tg: Any, event: dict[str, Any]) -> None:
        if self.probe.wants(event):
            tg.start_soon(self.probe.probe, event)

    async def _webhook_endpoint(self, payload: bytes, signature: str) -> int:
        self._deliveries += 1
        if self.nemesis.webhook_fails():
            self.history.record("fault.webhook_failure")
            return 500
        with request_scope(f"wh{self._deliveries}"):
            _, status = await self.cluster.call(lambda e: e.handle_webhook(payload, signature))
        return int(status)

    async def _reconcile_loop(self) -> None:
        while True:
            await virtual_time.sleep(self.scenario.durations.reconcile_every_s)
            if self._sweeps_handed_over:
                return  # the liveness phase sweeps from now on
            await self._reconcile_once()

    async def _reconcile_once(self) -> None:
        self._reconciles += 1
        self._sweeping += 1
        try:
            for instance in self.cluster.instances:
                if instance.up:
                    try:
                        with request_scope(f"reconcile{self._reconciles}"):
                            await instance.call(lambda e: e.reconcile())
                    except Exception as exc:  # a crashing sweeper is recorded, never fatal
                        self.history.record(
                            "reconcile.error",
                            instance=instance.name,
                            error=f"{type(exc).__name__}: {exc}",
                        )
        finally:
            self._sweeping -= 1

    # ---- liveness

    async def _liveness_phase(self) -> None:
        sc = self.scenario
        faults_end = sc.durations.workload_s
        await self.clock.sleep_until(faults_end)
        self.history.record("liveness.start")
        await self.probe.ensure_probed()
        for instance in self.cluster.instances:
            if not instance.up and not instance.retired:
                instance.start()
        # counted from the last client's last request: late customers act after faults stop
        started = max(faults_end, self.clock.elapsed())
        deadline = started + sc.durations.liveness_s
        step = sc.durations.reconcile_every_s
        # give the engine's sweeper one full grace period to resolve unknown outcomes
        settled = started + sc.engine_config.reconcile_grace + step
        # Once settled, this loop makes the sweeps, a step apart, instead of the periodic one:
        # run side by side, a sweep that takes a while (a Stripe call at each sweep, a slow
        # Stripe) was in flight at every check in lockstep with the other, and the run never
        # read as quiet. A sweep still in flight from before (one stalled by a fault) is waited
        # for, never overlapped.
        while not self.quiescent and self.clock.elapsed() < deadline:
            if self.clock.elapsed() >= settled:
                self._sweeps_handed_over = True
            if self._quiet() and self._sweeps_handed_over:
                await self._reconcile_once()
                self.quiescent = await self.delivery.wait_idle(step) and self._quiet()
            else:
                if self._sweeps_handed_over and self._sweeping == 0:
                    await self._reconcile_once()
                await virtual_time.sleep(step)
        self.history.record(
            "liveness.end",
            quiescent=self.quiescent,
            outstanding_webhooks=self.delivery.outstanding(),
            open_sessions=self._open_sessions(),
        )

    def _quiet(self) -> bool:
        """No session a customer could still pay, no webhook Stripe still has to deliver, no
        request Stripe is still executing (a slow create still makes a session, or a 400 the
        sweep has to learn of), no sweep still running (one stalled by a fault before the
        workload ended may hold what the liveness phase's own sweep needs: a lock, a
        one-sweeper-at-a-time lease)."""
        return (
            self._open_sessions() == 0
            and self.delivery.outstanding() == 0
            and self.fake.executing == 0
            and self._sweeping == 0
        )

    def _open_sessions(self) -> int:
        sessions = self.fake.sessions
        # a settled (spilled) session is never open: only the live ones need looking at
        live = sessions.live() if isinstance(sessions, ObjectTable) else sessions
        return sum(1 for s in live.values() if s.status == "open")

    # ---- output

    def _counts(self) -> dict[str, Any]:
        kept = self.db.sync[WEBHOOK_DEAD_LETTERS].count_documents({})
        return {
            # paid sessions the engine kept for a human (only shown when there are some)
            **({"dead_letters": kept} if kept else {}),
            "operations": dict(self.clients.counts),
            "sessions": len(self.fake.sessions),
            "events": len(self.fake.events),
            "fulfilments": len(self.fulfilment.grants),
            "receipts": len(self.email.delivered),
            "refunds": len(self.fake.refunds),
            "webhook_attempts": self.delivery.stats.attempts,
        }

    def _snapshot(self) -> None:
        """The final state and the ledgers: streamed to the run's files one record at a time
        (a long run's are as large as its store), built in memory only without an out dir."""
        final_state: dict[str, Callable[[], Iterable[Any]]] = {
            "programs": lambda: self._sorted_docs(PROGRAMS),
            "purchases": lambda: self._sorted_docs(PURCHASES),
        }
        if self.db.sync[WEBHOOK_DEAD_LETTERS].count_documents({}):  # else the same bytes as before
            final_state[WEBHOOK_DEAD_LETTERS] = lambda: self._sorted_docs(WEBHOOK_DEAD_LETTERS)
        ledgers = ledger_tables(self.fake, self.fulfilment, self.email)
        if self.out_dir is not None:
            write_json_lists(self.out_dir / "final_state.json", final_state)
            write_json_lists(self.out_dir / "ledgers.json", ledgers)
        else:
            self.final_state = {k: list(rows()) for k, rows in final_state.items()}
            self.ledgers = {k: list(rows()) for k, rows in ledgers.items()}

    def _sorted_docs(self, collection: str) -> Iterator[dict[str, Any]]:
        """Every document of `collection` by `_id`, read one at a time."""
        coll = self.db.sync[collection]
        for doc_id in sorted((d["_id"] for d in coll.find({}, {"_id": 1})), key=_id_order):
            doc = coll.find_one({"_id": doc_id})
            if doc is not None:
                yield doc

    def result(self, wall_s: float) -> RunResult:
        seed_stats = None
        if self.seed_lock_services:
            seed_stats = [vars(s.seed_stats()) for s in self.seed_lock_services]
        return RunResult(
            scenario=self.scenario.name,
            seed=self.seed,
            engine=self.engine_name,
            quiescent=self.quiescent,
            history_sha256=self.history.sha256(),
            history_lines=self.history.seq,
            virtual_s=self.virtual_s,
            wall_s=wall_s,
            counts=self._counts(),
            lock_wait_ms=self.lock_stats.report(),
            seed_lock_stats={"instances": seed_stats} if seed_stats else None,
            engine_errors=self.engine_errors.as_list(),
            out_dir=self.out_dir,
            success_page=self.success_page,
            _final_state=self.final_state,
            _ledgers=self.ledgers,
        )


_PURCHASE_FIELDS = ("status", "user_id", "program_id", "class_rep", "stripe_session_id")


def _id_order(doc_id: Any) -> tuple[int, Any]:
    """String ids in their own order (as always); any other id an engine let in (a number, an
    object from a hostile webhook) after them, by its JSON, instead of crashing the snapshot."""
    if isinstance(doc_id, str):
        return (0, doc_id)
    return (1, json.dumps(doc_id, sort_keys=True, default=str))


def lock_event_recorder(record: Callable[..., Any]) -> Callable[..., None]:
    """`LockStats`' event hook: each grant, timeout and release as a `lock.*` history line."""

    def on_event(
        kind: str,
        key: str,
        family: str,
        wait_s: float | None,
        hold_s: float | None,
        token: int | None,
    ) -> None:
        record(
            f"lock.{kind}",
            key=key,
            family=family,
            wait_s=_r(wait_s),
            hold_s=_r(hold_s),
            token=token,
        )

    return on_event


def ledger_tables(
    fake: FakeStripe, fulfilment: RecordingFulfilment, email: FakeEmail
) -> dict[str, Callable[[], Iterable[Any]]]:
    """The rows of ledgers.json, table by table: what Stripe, fulfilment and email recorded
    (the checkers' facts, independent of the engine's store)."""
    return {
        "sessions": lambda: (
            {
                "id": s.id,
                "status": s.status,
                "payment_status": s.payment_status,
                "payment_intent": s.payment_intent,
                "client_reference_id": s.client_reference_id,
                "metadata": dict(s.metadata),
                "amount_total": s.amount_total,
                "currency": s.currency,
                "mode": s.mode,
            }
            for s in fake.sessions.values()
        ),
        "refunds": lambda: (
            {"id": r.id, "payment_intent": r.payment_intent, "amount": r.amount}
            for r in fake.refunds
        ),
        "fulfilments": lambda: (_fields(g) for g in fulfilment.grants),
        "receipts": lambda: (_fields(r) for r in email.delivered),
    }


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def _fields(record: Any) -> dict[str, Any]:
    return {f.name: getattr(record, f.name) for f in fields(record)}


def _dumps(value: Any) -> str:
    """`json.dumps(value, indent=1, sort_keys=True, default=str)`, by the faster equal encoder
    (one call per row of the final state and ledgers)."""
    return pretty_json.dumps_sorted(value, indent=1)


def _write_json(path: Path, data: Any) -> None:
    path.write_text(_dumps(data) + "\n", encoding="utf-8")


def write_json_lists(path: Path, data: dict[str, Callable[[], Iterable[Any]]]) -> None:
    """`_write_json(path, {k: list(rows()) ...})` byte for byte, writing one row at a time:
    a row at depth 2 is `_dumps(row)` with its inner lines indented two more spaces."""
    with path.open("w", encoding="utf-8") as fh:
        fh.write("{")
        for n, key in enumerate(sorted(data)):
            fh.write(("," if n else "") + "\n " + json.dumps(key) + ": ")
            first = True
            for row in data[key]():
                fh.write(("[\n  " if first else ",\n  ") + _dumps(row).replace("\n", "\n  "))
                first = False
            fh.write("[]" if first else "\n ]")
        fh.write("\n}\n" if data else "}\n")
