"""The class of the engine a factory builds, for what the harness must know before it builds one.

An engine declares, as class attributes, how it wants its ports made (`memory_lock_service`: its
own in-memory lock table; `stripe_client_settings`: its SDK's defaults) and whether it offers
the success page. A factory may be the class itself or a `module:factory` function, which has
none of those attributes: the class is then found by building one engine over inert ports once
(the constructor does no I/O by the port contract), and remembered.
"""

from __future__ import annotations

import inspect
from typing import Any

from reference_impl.ports import EngineFactory

_classes: dict[int, tuple[EngineFactory, type]] = {}


def engine_class(factory: EngineFactory) -> type:
    if inspect.isclass(factory):
        return factory
    known = _classes.get(id(factory))
    if known is None or known[0] is not factory:
        from simulator.suite import probe_env

        known = _classes[id(factory)] = (factory, type(factory(probe_env())))
    return known[1]


def declared(factory: EngineFactory, name: str, default: Any = None) -> Any:
    """A class attribute of the engine the factory builds (`default` if it has none)."""
    return getattr(engine_class(factory), name, default)
