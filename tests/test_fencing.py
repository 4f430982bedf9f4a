"""Fencing of the purchase slot: a write under the purchase lock carries the
lease's token, and the store refuses it once a newer token of the same lock has written.

The lock here hands out a new lease to every caller at once, as a lease lock does to the next
caller once the holder's lease expired: two "holders" run side by side, tokens still grow.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import anyio
import pytest
import redis

from reference_impl import errors
from reference_impl.locks import Lease
from reference_impl.memory_locks import MemoryLockService
from reference_impl.ports import EngineEnv
from reference_impl.redis_locks import RedisLockService
from reference_impl.reference_engine import ReferenceEngine, fence_scope_of
from reference_impl.schema import EXPIRED, SLOTS, program_doc
from reference_impl.store import AsyncDatabase
from simulator.ids import SequentialIds
from simulator.mutants import MUTANTS
from tests.enginehelpers import World, make_env, run_virtual, world

USER, PROG = "user_1", "prog_1"
SLOT = f"{USER}:{PROG}"
OLD = "pur_old"


class ExpiredLeases:
    """A lease lock whose every lease has already expired: no exclusion, growing tokens."""

    def __init__(self) -> None:
        self._tokens = itertools.count(1)

    def hold(self, key: str, *, wait_timeout: float) -> AbstractAsyncContextManager[Lease]:
        return self._hold(key)

    @asynccontextmanager
    async def _hold(self, key: str) -> AsyncIterator[Lease]:
        yield Lease(key, next(self._tokens))


class StallFirst:
    """Store observer: the first `collection.op` call waits until `go` is set."""

    def __init__(self, collection: str, op: str) -> None:
        self.target = (collection, op)
        self.reached = anyio.Event()
        self.go = anyio.Event()
        self._armed = True

    async def before(
        self, collection: str, op: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]
    ) -> None:
        await anyio.lowlevel.checkpoint()
        if self._armed and (collection, op) == self.target:
            self._armed = False
            self.reached.set()
            await self.go.wait()

    def after(self, *args: Any) -> None:
        return None


def _observed(factory: Any, observer: Any) -> Callable[[EngineEnv], Any]:
    def build(env: EngineEnv) -> Any:
        env.store = AsyncDatabase(env.store.sync, observer)
        return factory(env)

    return build


def _seed_expired_purchase(w: World, fence: dict[str, Any] | None = None) -> None:
    """The user bought before and that purchase expired: the slot points at it."""
    sync = w.env.store.sync
    sync.purchases.insert_one(
        {"_id": OLD, "user_id": USER, "program_id": PROG, "class_rep": False, "status": EXPIRED}
    )
    sync[SLOTS].insert_one({"_id": SLOT, "purchase_id": OLD, "at": 0.0, **(fence or {})})


def _slot(w: World) -> dict[str, Any]:
    slot = w.env.store.sync[SLOTS].find_one({"_id": SLOT})
    assert slot is not None
    return slot


def _run(fn: Callable[[], Awaitable[None]]) -> None:
    run_virtual(fn)


def test_a_stale_holder_cannot_swing_the_slot_back_after_a_newer_token_wrote() -> None:
    """ABA: the slot is back at the purchase the stale holder saw, so only the fence refuses it."""

    async def scenario(factory: Any, fenced: bool) -> None:
        stall = StallFirst(SLOTS, "update_one")
        programs = [program_doc(PROG, class_rep_limit=5)]
        async with world(_observed(factory, stall), programs=programs, locks=ExpiredLeases()) as w:
            _seed_expired_purchase(w)
            outcome: dict[str, Any] = {}

            async def stale_holder() -> None:  # token 1: read the slot, then paused
                try:
                    outcome["stale"] = await w.engine.create_purchase(USER, PROG, False)
                except errors.Busy as exc:
                    outcome["stale"] = exc

            # virtual time: a step that never comes fails at once instead of hanging
            with anyio.fail_after(600):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(stale_holder)
                    await stall.reached.wait()
                    newer = await w.engine.create_purchase(USER, PROG, False)  # token 2
                    assert _slot(w)["purchase_id"] == newer.purchase_id
                    # a late payment of the old purchase takes the slot back (`_may_reclaim_slot`)
                    w.env.store.sync[SLOTS].update_one(
                        {"_id": SLOT}, {"$set": {"purchase_id": OLD}}
                    )
                    stall.go.set()
            if fenced:
                assert isinstance(outcome["stale"], errors.Busy)
                assert _slot(w)["purchase_id"] == OLD and _slot(w)["fence"] == 2
                assert _slot(w)["fence_scope"] == w.engine.fence_scope
            else:  # the same steps without the fence: the stale write lands
                assert not isinstance(outcome["stale"], errors.Busy)
                assert _slot(w)["purchase_id"] == outcome["stale"].purchase_id

    _run(lambda: scenario(ReferenceEngine, True))
    _run(lambda: scenario(MUTANTS["redis-no-fence"].factory, False))


def test_a_newer_token_may_write_over_an_older_fence() -> None:
    async def scenario() -> None:
        locks = ExpiredLeases()
        async with world(ReferenceEngine, locks=locks) as w:
            scope = w.engine.fence_scope
            _seed_expired_purchase(w, {"fence": 0, "fence_scope": scope})
            result = await w.engine.create_purchase(USER, PROG, False)
            assert _slot(w) | {"at": 0} == {
                "_id": SLOT,
                "purchase_id": result.purchase_id,
                "at": 0,
                "fence": 1,
                "fence_scope": scope,
            }

    _run(scenario)


def test_an_equal_or_newer_fence_of_the_same_scope_refuses_the_write() -> None:
    async def scenario() -> None:
        async with world(ReferenceEngine, locks=ExpiredLeases()) as w:
            _seed_expired_purchase(w, {"fence": 1, "fence_scope": w.engine.fence_scope})
            with pytest.raises(errors.Busy):
                await w.engine.create_purchase(USER, PROG, False)  # token 1: not newer
            assert _slot(w)["purchase_id"] == OLD
            result = await w.engine.create_purchase(USER, PROG, False)  # token 2
            assert _slot(w)["purchase_id"] == result.purchase_id

    _run(scenario)


def test_the_insert_path_records_the_fence_of_the_lease_held() -> None:
    async def scenario() -> None:
        locks = MemoryLockService()
        async with world(ReferenceEngine, locks=locks) as w:
            async with w.engine._lock("warm:up", 1.0) as lease:  # noqa: SLF001 - the helper's yield
                assert isinstance(lease, Lease) and lease.token == 1
            result = await w.engine.create_purchase(USER, PROG, False)
            slot = _slot(w)
            assert slot["purchase_id"] == result.purchase_id
            assert slot["fence"] == 2 and slot["fence_scope"] == w.engine.fence_scope

    _run(scenario)


def test_tokens_of_another_lock_table_do_not_fence() -> None:
    """Two instances (or a restart) each count from 1: a high fence from the other table must
    not lock the user out; the slot's own compare-and-swap still guards it."""

    async def scenario() -> None:
        async with world(ReferenceEngine, locks=MemoryLockService()) as w:
            _seed_expired_purchase(w, {"fence": 1000, "fence_scope": w.engine.fence_scope})
            with pytest.raises(errors.Busy):  # same table, token 1 < 1000
                await w.engine.create_purchase(USER, PROG, False)
            env = await make_env(
                stripe_client=w.env.stripe,
                store=w.env.store,
                locks=MemoryLockService(),  # the new instance's own table: tokens from 1
                clock=w.env.clock,
                ids=SequentialIds("b"),
                instance="i1",
            )
            restarted = ReferenceEngine(env)
            assert restarted.fence_scope != w.engine.fence_scope
            result = await restarted.create_purchase(USER, PROG, False)
            assert _slot(w)["purchase_id"] == result.purchase_id
            assert _slot(w)["fence_scope"] == restarted.fence_scope

    _run(scenario)


def test_fence_scope_of_a_redis_lock_is_its_namespace_shared_by_every_instance() -> None:
    client = redis.Redis()  # never connected: scripts register locally
    a = RedisLockService(client, namespace="ns:")
    b = RedisLockService(client, namespace="ns:")
    assert fence_scope_of(a) == fence_scope_of(b) == "redis:ns:"
    assert fence_scope_of(MemoryLockService()) is None
    client.close()
