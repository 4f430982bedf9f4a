"""Engine names to factories: `reference`, `seed`, and `module:factory` for an engine elsewhere."""

from __future__ import annotations

import importlib
from collections.abc import Callable

from reference_impl.ports import EngineFactory


class UnknownEngine(ValueError):
    """The engine name or `module:factory` path does not resolve to a factory."""


def _reference() -> EngineFactory:
    from reference_impl.reference_engine import ReferenceEngine

    return ReferenceEngine


def _seed() -> EngineFactory:
    from reference_impl.seed_engine import SeedEngine

    return SeedEngine


BUILTIN: dict[str, Callable[[], EngineFactory]] = {"reference": _reference, "seed": _seed}
#: built-in engines that claim to be safe: the webhook fuzz test holds each one to it
CLAIMS_SAFETY: frozenset[str] = frozenset({"reference"})
DESCRIPTIONS: dict[str, str] = {
    "reference": "the correct engine: conditional transitions, seat ledger, intent records, reconcile",
    "seed": "the seed document's design, faithfully, bugs and all (docs/seed-design.md)",
}


def load_factory(
    spec: str, extra: dict[str, Callable[[], EngineFactory]] | None = None
) -> EngineFactory:
    """Resolve a built-in name, a name in `extra`, or `package.module:factory`."""
    table = {**BUILTIN, **(extra or {})}
    if spec in table:
        return table[spec]()
    if ":" not in spec or spec.startswith("mutant:"):
        raise UnknownEngine(
            f"unknown engine {spec!r}; built-in engines: {', '.join(sorted(table))}"
        )
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UnknownEngine(
            f"engine {spec!r}: cannot import module {module_name!r} ({exc})"
        ) from exc
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise UnknownEngine(f"engine {spec!r}: module {module_name!r} has no callable {attr!r}")
    return factory
