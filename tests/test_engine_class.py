"""What an engine declares about its ports is read off the engine its factory builds, so a
`module:factory` function gets what its engine class asks for, as the class itself would."""

from __future__ import annotations

from reference_impl.lock_stats import LockStats
from reference_impl.memory_locks import MemoryLockService
from reference_impl.ports import EngineEnv
from reference_impl.reference_engine import ReferenceEngine
from reference_impl.seed_engine import SeedEngine
from reference_impl.seed_locks import SeedLockService
from reference_impl.seed_stripe import SEED_STRIPE_CLIENT
from simulator.demo import DEMO
from simulator.engine_class import declared, engine_class
from simulator.run import simulate
from simulator.topology import memory_locks_for


def seed_factory(env: EngineEnv) -> SeedEngine:
    return SeedEngine(env)


def reference_factory(env: EngineEnv) -> ReferenceEngine:
    return ReferenceEngine(env)


def test_a_factory_function_declares_what_its_engine_class_declares() -> None:
    assert engine_class(seed_factory) is SeedEngine and engine_class(SeedEngine) is SeedEngine
    assert declared(seed_factory, "stripe_client_settings") == SEED_STRIPE_CLIENT
    assert declared(reference_factory, "stripe_client_settings") is None
    assert isinstance(memory_locks_for(seed_factory, LockStats()), SeedLockService)
    assert type(memory_locks_for(reference_factory, LockStats())) is MemoryLockService


def test_a_run_of_a_factory_function_uses_its_engines_lock_service() -> None:
    by_function = simulate(DEMO, 1, seed_factory)
    by_class = simulate(DEMO, 1, SeedEngine)
    assert by_function.seed_lock_stats is not None  # the seed's own (buggy) lock table ran
    assert by_function.seed_lock_stats == by_class.seed_lock_stats
    assert by_function.counts == by_class.counts
