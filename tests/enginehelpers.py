"""Shared wiring for engine tests: an `EngineEnv` over the fakes, and virtual-time running.

Engine tests (seed and reference) build the same world: a mongomock store, a lock service, the
fake Stripe reached through the real SDK, deterministic ids, recording fulfilment and email, and
trio's MockClock so Stripe's and the locks' timeouts cost no wall time.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
import stripe
from trio.testing import MockClock

from reference_impl.locks import LockService
from reference_impl.ports import Engine, EngineConfig, EngineEnv
from reference_impl.schema import install_programs, program_doc
from reference_impl.store import AsyncDatabase, open_database
from simulator.clock import SimClock
from simulator.ids import SequentialIds
from simulator.services import FakeEmail, RecordingFulfilment

WEBHOOK_SECRET = "whsec_sim"

T = TypeVar("T")


def run_virtual(fn: Callable[[], Awaitable[T]]) -> T:
    """Run `fn` under trio with a MockClock that jumps whenever every task is blocked."""
    return anyio.run(fn, backend="trio", backend_options={"clock": MockClock(autojump_threshold=0)})


async def make_env(
    *,
    stripe_client: stripe.StripeClient,
    locks: LockService | None = None,
    store: AsyncDatabase | None = None,
    programs: Iterable[Mapping[str, Any]] = (),
    config: EngineConfig | None = None,
    clock: SimClock | None = None,
    ids: SequentialIds | None = None,
    fulfilment: RecordingFulfilment | None = None,
    email: FakeEmail | None = None,
    webhook_secret: str = WEBHOOK_SECRET,
    instance: str = "i0",
) -> EngineEnv:
    """An `EngineEnv` over the fakes; `programs` (docs, e.g. `program_doc(...)`) are installed.

    Pass `store` (and a lock service) shared between calls to build several instances of one
    deployment; keep references to `fulfilment`/`email` to read their ledgers.
    """
    if locks is None:
        from reference_impl.memory_locks import MemoryLockService

        locks = MemoryLockService()
    db = store if store is not None else open_database()
    await install_programs(db, [dict(p) for p in programs])
    return EngineEnv(
        store=db,
        locks=locks,
        stripe=stripe_client,
        webhook_secret=webhook_secret,
        fulfilment=fulfilment if fulfilment is not None else RecordingFulfilment(instance=instance),
        email=email if email is not None else FakeEmail(),
        clock=clock if clock is not None else SimClock(),
        ids=ids if ids is not None else SequentialIds(),
        config=config if config is not None else EngineConfig(),
        instance=instance,
    )


@dataclass
class World:
    """One engine instance wired to a fake Stripe; the ledgers are kept typed for assertions."""

    fake: Any  # simulator.fake_stripe.FakeStripe
    env: EngineEnv
    engine: Engine
    fulfilment: RecordingFulfilment
    email: FakeEmail

    async def program(self, program_id: str) -> dict[str, Any]:
        doc = await self.env.store.programs.find_one({"_id": program_id})
        assert doc is not None
        return doc

    async def purchases(self, **query: Any) -> list[dict[str, Any]]:
        return await self.env.store.purchases.find(query).to_list()

    def events(self, type: str) -> list[dict[str, Any]]:
        return [e for e in self.fake.events if e["type"] == type]

    async def deliver(self, event: dict[str, Any]) -> int:
        """Sign `event` now, as Stripe would, and post it to the engine."""
        payload = self.fake.event_payload(event)
        return await self.engine.handle_webhook(payload, self.fake.sign(payload))


@asynccontextmanager
async def world(
    factory: Callable[[EngineEnv], Engine],
    *,
    programs: Iterable[Mapping[str, Any]] = (program_doc("prog_1", class_rep_limit=1),),
    locks: LockService | None = None,
    config: EngineConfig | None = None,
    email: FakeEmail | None = None,
    seed: int = 1,
    max_network_retries: int = 2,
) -> AsyncIterator[World]:
    """A fake Stripe in a task group plus one engine; background tasks are cancelled on exit."""
    from simulator.fake_stripe import FakeStripe

    clock = SimClock()
    async with anyio.create_task_group() as tg:
        fake = FakeStripe(
            clock=clock, rng=random.Random(seed), task_group=tg, webhook_secret=WEBHOOK_SECRET
        )
        fulfilment = RecordingFulfilment()
        mail = email if email is not None else FakeEmail()
        env = await make_env(
            stripe_client=fake.client(max_network_retries=max_network_retries),
            locks=locks,
            programs=programs,
            config=config,
            clock=clock,
            fulfilment=fulfilment,
            email=mail,
        )
        yield World(fake=fake, env=env, engine=factory(env), fulfilment=fulfilment, email=mail)
        tg.cancel_scope.cancel()
