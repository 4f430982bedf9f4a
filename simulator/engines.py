"""Every engine paysim knows by name: the built-in ones, and (later) the mutants."""

from __future__ import annotations

from collections.abc import Callable

from reference_impl.ports import EngineFactory
from reference_impl.registry import BUILTIN, DESCRIPTIONS, load_factory

#: name -> lazy factory for engines that live in the simulator (mutants)
EXTRA: dict[str, Callable[[], EngineFactory]] = {}
EXTRA_DESCRIPTIONS: dict[str, str] = {}


def engine_names() -> list[tuple[str, str]]:
    names = {**DESCRIPTIONS, **EXTRA_DESCRIPTIONS}
    return [(name, names[name]) for name in [*BUILTIN, *sorted(EXTRA)]]


def resolve(spec: str) -> EngineFactory:
    return load_factory(spec, EXTRA)


# the mutants register themselves into EXTRA on import; imported last, after EXTRA exists
from simulator import mutants as _mutants  # noqa: E402,F401
