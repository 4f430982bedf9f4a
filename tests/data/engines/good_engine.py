"""A user's engine, as `--engine good_engine:factory` finds it: the reference engine, wrapped."""

from __future__ import annotations

from reference_impl.ports import Engine, EngineEnv
from reference_impl.reference_engine import ReferenceEngine


def factory(env: EngineEnv) -> Engine:
    return ReferenceEngine(env)
