"""An engine served over HTTP in wall-clock time: its ports built from real things.

What `paysim serve` and `paysim blackbox --serve` run. Each engine instance gets an `EngineEnv`
(reference_impl/ports.py) of: the real clock; the store (embedded mongomock, or MongoDB at
`MONGODB_URI`); the engine's own in-memory lock service; a real `stripe.StripeClient` over
HTTPX pointed at a (fake) Stripe URL; fulfilment and email that record into a ledger served at
`GET /paysim/ledger`, or go to an HTTP sink / SMTP server (simulator/blackbox/sink_clients.py).
A reconcile loop sweeps every `reconcile_every_s`.

When paysim itself starts the service, it passes `before_store_call`: the nemesis' hook at each
store call (store latency, slow handlers, pauses, crash points), exactly as in simulation, and
`before_side_effect`: its crash points before each grant and receipt.
"""

from __future__ import annotations

import random
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx
import stripe
import trio

from reference_impl.lock_stats import LockStats
from reference_impl.ports import EngineConfig, EngineEnv, EngineFactory
from reference_impl.schema import PROGRAMS, program_doc
from reference_impl.store import AsyncDatabase, open_database
from simulator.blackbox.engine_http import EngineApp
from simulator.blackbox.json_routes import HttpError
from simulator.blackbox.serving import serve_asgi
from simulator.blackbox.sink_clients import HttpEmail, HttpFulfilment, SmtpEmail
from simulator.blackbox.stripe_service import DEFAULT_SECRET
from simulator.clock import SimClock
from simulator.engine_errors import EngineErrors
from simulator.ids import SequentialIds
from simulator.services import FakeEmail, RecordingFulfilment
from simulator.side_effects import GuardedEmail, GuardedFulfilment
from simulator.topology import Cluster, Instance, memory_locks_for

StoreHook = Callable[[Instance, str, str], Awaitable[None]]
SideEffectHook = Callable[[Instance, str], Awaitable[None]]
MAX_PROGRAMS = 1000


def _no_record(type: str, **fields: Any) -> None:
    return None


@dataclass(frozen=True)
class ProgramSeed:
    id: str
    class_rep_limit: int
    price_cents: int = 5000


@dataclass
class ServeOptions:
    stripe_url: str
    webhook_secret: str = DEFAULT_SECRET
    stripe_api_key: str = "sk_test_paysim"
    config: EngineConfig = field(default_factory=EngineConfig)
    programs: tuple[ProgramSeed, ...] = (ProgramSeed("prog_1", 3),)
    instances: int = 1
    max_network_retries: int = 2
    reconcile_every_s: float = 5.0
    host: str = "127.0.0.1"
    port: int = 0
    #: HTTP sink for fulfilments and receipts (None: the served ledger)
    sink_url: str | None = None
    #: SMTP server for receipts, (host, port) (None: the sink or the ledger)
    smtp: tuple[str, int] | None = None


@dataclass
class ServedEngine:
    url: str
    cluster: Cluster
    app: EngineApp
    db: AsyncDatabase


def _guarded(
    port: Any,
    guard: type[GuardedFulfilment] | type[GuardedEmail],
    instance: Instance,
    hook: SideEffectHook | None,
) -> Any:
    """`port` with the nemesis' crash point before each call, when paysim started the service."""
    if hook is None:
        return port

    async def before(call: str) -> None:
        await hook(instance, call)

    return guard(port, before)


class _Hooks:
    """Store observer of one instance: the nemesis' hook before each call, nothing after."""

    def __init__(self, instance: Instance, hook: StoreHook | None) -> None:
        self.instance, self.hook = instance, hook

    async def before(
        self, collection: str, op: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]
    ) -> None:
        if self.hook is not None:
            await self.hook(self.instance, collection, op)
        await trio.lowlevel.checkpoint()

    def after(self, *args: Any) -> None:
        return None


@asynccontextmanager
async def serve_engine(
    factory: EngineFactory,
    options: ServeOptions,
    *,
    record: Callable[..., Any] = _no_record,
    before_store_call: StoreHook | None = None,
    before_side_effect: SideEffectHook | None = None,
    lock_stats: LockStats | None = None,
    errors: EngineErrors | None = None,
) -> AsyncIterator[ServedEngine]:
    """`factory`'s engine served on `options.host:port` while the block runs; then every
    server, loop and client it opened is closed (success, error or cancellation alike)."""
    run = secrets.token_hex(3)  # ids stay unique across restarts against one MongoDB
    db = open_database(f"paysim_serve_{run}")
    clock = SimClock(epoch=time.time(), origin=trio.current_time())
    stats = lock_stats or LockStats()
    async with AsyncExitStack() as stack:
        http = await stack.enter_async_context(httpx.AsyncClient())
        effects = _SideEffects(options, http)
        stripe_clients: list[stripe.HTTPXClient] = []

        def make_env(instance: Instance) -> EngineEnv:
            http_client = stripe.HTTPXClient()
            stripe_clients.append(http_client)
            return EngineEnv(
                store=AsyncDatabase(db.sync, _Hooks(instance, before_store_call)),
                locks=memory_locks_for(factory, stats),
                stripe=stripe.StripeClient(
                    options.stripe_api_key,
                    base_addresses={"api": options.stripe_url},
                    max_network_retries=options.max_network_retries,
                    http_client=http_client,
                ),
                webhook_secret=options.webhook_secret,
                fulfilment=_guarded(
                    effects.fulfilment, GuardedFulfilment, instance, before_side_effect
                ),
                email=_guarded(effects.email, GuardedEmail, instance, before_side_effect),
                clock=clock,
                ids=SequentialIds(f"{run}{instance.name}g{instance.generation}x"),
                config=options.config,
                instance=instance.name,
            )

        cluster = Cluster(
            [
                Instance(f"i{n}", make_env, factory, record, errors=errors)
                for n in range(options.instances)
            ],
            "round_robin",
            random.Random(0),  # round robin: the balancer draws nothing
        )

        async def reset(body: dict[str, Any]) -> None:
            programs = _programs_of(body)
            for name in db.sync.list_collection_names():
                db.sync.drop_collection(name)
            _install(db, programs)
            effects.renew()
            for instance in cluster.instances:  # fresh memory over the fresh store
                instance.crash("reset")
                instance.start()

        _install(db, options.programs)
        for instance in cluster.instances:
            instance.start()
        app = EngineApp(cluster, db, effects.ledger_json, reset)
        stack.push_async_callback(_close_all, stripe_clients)
        url = await stack.enter_async_context(serve_asgi(app, host=options.host, port=options.port))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_reconcile_loop, cluster, options.reconcile_every_s, record)
            try:
                yield ServedEngine(url, cluster, app, db)
            finally:
                nursery.cancel_scope.cancel()


class _SideEffects:
    """The fulfilment and email ports every instance shares: the served ledger, or clients of
    a sink. `renew` starts an empty ledger (a reset)."""

    def __init__(self, options: ServeOptions, http: httpx.AsyncClient) -> None:
        self.options, self.http = options, http
        self.renew()

    def renew(self) -> None:
        options = self.options
        self.fulfilment: Any = (
            HttpFulfilment(options.sink_url, self.http)
            if options.sink_url
            else RecordingFulfilment()
        )
        self.email: Any = FakeEmail()
        if options.smtp is not None:
            self.email = SmtpEmail(*options.smtp)
        elif options.sink_url is not None:
            self.email = HttpEmail(options.sink_url, self.http)

    def ledger_json(self) -> dict[str, Any]:
        """What GET /paysim/ledger shows: the grants and receipts kept here (None: sent on)."""
        grants = getattr(self.fulfilment, "grants", None)
        receipts = getattr(self.email, "delivered", None)
        return {
            "fulfilments": None if grants is None else [asdict(g) for g in grants],
            "receipts": None if receipts is None else [asdict(r) for r in receipts],
        }


def _programs_of(body: dict[str, Any]) -> tuple[ProgramSeed, ...]:
    raw = body.get("programs")
    if not isinstance(raw, list) or not 0 < len(raw) <= MAX_PROGRAMS:
        raise HttpError(400, "bad_request", f"programs: expected a list of 1 to {MAX_PROGRAMS}")
    out = []
    for n, p in enumerate(raw):
        ok = (
            isinstance(p, dict)
            and isinstance(p.get("id"), str)
            and 0 < len(p["id"]) <= 200
            and _count(p.get("class_rep_limit"))
            and _count(p.get("price_cents", 5000))
        )
        if not ok:
            raise HttpError(
                400, "bad_request", f"programs[{n}]: expected {{id, class_rep_limit, price_cents}}"
            )
        out.append(ProgramSeed(p["id"], p["class_rep_limit"], p.get("price_cents", 5000)))
    return tuple(out)


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 100_000_000


def _install(db: AsyncDatabase, programs: tuple[ProgramSeed, ...]) -> None:
    for p in programs:
        db.sync[PROGRAMS].replace_one(
            {"_id": p.id},
            program_doc(p.id, class_rep_limit=p.class_rep_limit, price_cents=p.price_cents),
            upsert=True,
        )


async def _close_all(clients: list[stripe.HTTPXClient]) -> None:
    with trio.CancelScope(shield=True):
        for client in clients:
            await client.close_async()


async def _reconcile_loop(cluster: Cluster, every_s: float, record: Callable[..., Any]) -> None:
    while True:
        await trio.sleep(every_s)
        await reconcile_all(cluster, record)


async def reconcile_all(cluster: Cluster, record: Callable[..., Any]) -> None:
    """One sweep on every live instance; a crashing sweeper is recorded, never fatal."""
    for instance in cluster.instances:
        if instance.up:
            try:
                await instance.call(lambda e: e.reconcile())
            except Exception as exc:
                record(
                    "reconcile.error",
                    instance=instance.name,
                    error=f"{type(exc).__name__}: {exc}",
                )
