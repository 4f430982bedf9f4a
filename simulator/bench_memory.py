"""Where a long run's memory goes: retained KB per purchase, by component.

`python -m simulator.bench_memory 2000 8000` runs the benchmark scenario at each size (each in
a fresh interpreter) and prints JSON: for each size the bytes still reachable at the end of the
simulation (after the liveness phase, just before the end-of-run snapshot of the final state and
ledgers is built), by component, and the slope between the two sizes in KB per purchase — what
grows with the run. `make bench` prints that slope in its memory note.

Bytes are charged by ownership, not by allocation site: each component has roots (the store's
database, the fake's idempotency cache, its event list, its sessions and payment intents, the
harness's ledgers, the engine instances, trio's runner), and an object is charged to the first
component, in that order, from whose roots it is reachable. The walk does not pass through
modules, classes, functions, bound methods or the hub objects that tie the world together (the
run itself, the fake, the cluster), so one component does not swallow the others. Sizes are
`sys.getsizeof`, which is what the objects cost the allocator give or take rounding; whatever is
reachable from the interpreter but from no component root is `other`. No tracing is needed, so
the run goes at full speed (tracemalloc slowed it down 30-fold).
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import tempfile
import types
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from simulator.bench_scenarios import purchases_scenario

COMPONENTS = (
    "store",
    "harness_ledgers",
    "engine",
    "fake_stripe_idempotency",
    "events",
    "fake_stripe_state",
    "trio_anyio",
    "other",
)

#: never walked into: shared code and type objects, not run state
_OPAQUE = (
    types.ModuleType,
    type,
    types.FunctionType,
    types.BuiltinFunctionType,
    types.MethodType,
    types.CodeType,
    types.MethodDescriptorType,
    types.WrapperDescriptorType,
    types.GetSetDescriptorType,
    types.MemberDescriptorType,
    property,
    staticmethod,
    classmethod,
)


_TASK_TYPES = (
    types.CoroutineType,
    types.GeneratorType,
    types.AsyncGeneratorType,
    types.FrameType,
    types.TracebackType,
)
_TASK_MODULES = ("trio", "anyio", "outcome", "sniffio")


def _is_task_state(obj: Any) -> bool:
    if isinstance(obj, _TASK_TYPES):
        return True
    module = type(obj).__module__
    return module.split(".", 1)[0] in _TASK_MODULES


class _Walker:
    """Charges every object reachable from a component's roots, once, to the first component."""

    def __init__(self, hubs: Iterable[Any]) -> None:
        self._keep: list[Any] = list(hubs)  # ids stay valid while the walk runs
        self._seen: set[int] = {id(h) for h in hubs}
        self._seen.update((id(self._seen), id(self._keep)))  # not the walk's own bookkeeping
        self.bytes: Counter[str] = Counter()
        self.objects: Counter[str] = Counter()
        self.types: dict[str, Counter[str]] = {}

    def charge(self, component: str, roots: Iterable[Any], *, tasks: bool = False) -> None:
        """Walk from `roots`; unless `tasks`, stop at trio/anyio objects and coroutine frames
        (task state is charged to trio_anyio, walked last but one)."""
        seen, keep = self._seen, self._keep
        sizes, counts = self.bytes, self.objects
        by_type = self.types.setdefault(component, Counter())
        stack = [r for r in roots if id(r) not in seen]
        for r in stack:
            seen.add(id(r))
        while stack:
            obj = stack.pop()
            keep.append(obj)
            size = sys.getsizeof(obj, 0)
            sizes[component] += size
            counts[component] += 1
            by_type[type(obj).__qualname__] += size
            if isinstance(obj, _OPAQUE):
                continue
            for ref in gc.get_referents(obj):
                if id(ref) in seen or isinstance(ref, _OPAQUE):
                    continue
                if not tasks and _is_task_state(ref):
                    continue
                seen.add(id(ref))
                stack.append(ref)


def component_roots(world: Any) -> list[tuple[str, list[Any]]]:
    """Each component's roots in a finished `_World` (simulator.run), in charging order."""
    fake = world.fake
    state = fake._state
    server = fake._server
    engines = []
    for instance in world.cluster.instances:
        engines += [getattr(instance, "engine", None), getattr(instance, "env", None)]
    runner = _trio_runner()
    return [
        ("store", [world.db]),
        (
            "harness_ledgers",
            [
                world.fulfilment,
                world.email,
                world.clients,
                world.history,
                world.lock_stats,
                world.nemesis,
                world.probe,
            ],
        ),
        ("engine", [e for e in engines if e is not None]),
        ("fake_stripe_idempotency", [server.idempotency_keys]),
        ("events", [state.events, *_extra_event_roots(fake, world.delivery)]),
        ("fake_stripe_state", [state, fake._sweeper, server, fake._network, fake]),
        ("trio_anyio", [runner] if runner is not None else []),
    ]


def _trio_runner() -> Any:
    """trio's run state (every task, timer and scope); private API, so only a bench tool uses it."""
    try:
        from trio._core._run import GLOBAL_RUN_CONTEXT
    except ImportError:  # pragma: no cover - a trio without it: fall back to the root task
        import trio

        return trio.lowlevel.current_root_task()
    return getattr(GLOBAL_RUN_CONTEXT, "runner", None)


def _extra_event_roots(fake: Any, delivery: Any) -> list[Any]:
    spill = getattr(fake._state, "spill", None)
    return [spill] if spill is not None else []


def measure_world(world: Any) -> dict[str, Any]:
    """Bytes per component reachable in `world` now (module docstring)."""
    gc.collect()
    hubs = [world, world.fake, world.cluster, world.delivery]
    walker = _Walker(hubs)
    for component, roots in component_roots(world):
        walker.charge(component, roots, tasks=component == "trio_anyio")
    walker.charge("other", gc.get_objects(), tasks=True)
    by_component = {c: walker.bytes[c] for c in COMPONENTS}
    return {
        "bytes": by_component,
        "objects": {c: walker.objects[c] for c in COMPONENTS},
        "total": sum(by_component.values()),
        "top_types": {c: walker.types.get(c, Counter()).most_common(8) for c in COMPONENTS},
    }


@contextmanager
def _measured_before_end_of_run(taken: list[dict[str, Any]]) -> Iterator[None]:
    """Measure when the run is over but before `_World._snapshot` builds the final state and
    ledgers."""
    from simulator import run as run_module

    world_cls: Any = run_module._World
    original: Callable[[Any], None] = world_cls._snapshot

    def patched(world: Any) -> None:
        taken.append(measure_world(world))
        original(world)

    world_cls._snapshot = patched
    try:
        yield
    finally:
        world_cls._snapshot = original


def measure(purchases: int, *, faults: bool = True) -> dict[str, Any]:
    """One run of `purchases` in this process; the breakdown at the end of the simulation."""
    from simulator.run import simulate

    taken: list[dict[str, Any]] = []
    scenario = purchases_scenario(purchases, faults=faults)
    with (
        tempfile.TemporaryDirectory(prefix="paysim-mem-") as tmp,
        _measured_before_end_of_run(taken),
    ):
        result = simulate(scenario, 1, "reference", Path(tmp))
    out = taken[0]
    out["purchases"] = purchases
    out["history_sha256"] = result.history_sha256
    return out


def slope(small: dict[str, Any], large: dict[str, Any]) -> dict[str, float]:
    """KB per purchase by component between two measurements (what grows with the run)."""
    n = max(1, large["purchases"] - small["purchases"])
    kb = {c: (large["bytes"][c] - small["bytes"][c]) / 1024 / n for c in COMPONENTS}
    kb["total"] = (large["total"] - small["total"]) / 1024 / n
    return kb


def _child(purchases: int, faults: bool) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "simulator.bench_memory", "--one", str(purchases)]
    cmd += [] if faults else ["--no-faults"]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"bench_memory {purchases} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def compare(small_n: int, large_n: int, *, faults: bool = True) -> dict[str, Any]:
    """Both sizes, each in a fresh interpreter, and the slope between them."""
    small, large = _child(small_n, faults), _child(large_n, faults)
    return {"small": small, "large": large, "kb_per_purchase": slope(small, large)}


def describe(kb_per_purchase: dict[str, float]) -> str:
    """`store 1.2, events 0.4, ...`: the components that grow, largest first, in KB/purchase."""
    parts = sorted(
        ((c, kb_per_purchase[c]) for c in COMPONENTS if abs(kb_per_purchase[c]) >= 0.05),
        key=lambda kv: -kv[1],
    )
    body = ", ".join(f"{c.replace('_', ' ')} {v:.2f}" for c, v in parts) or "nothing"
    return f"{body} (total {kb_per_purchase['total']:.2f} KB/purchase)"


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("small", type=int)
    parser.add_argument("large", type=int, nargs="?")
    parser.add_argument("--one", action="store_true", help="measure `small` in this process")
    parser.add_argument("--no-faults", action="store_true")
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(measure(args.small, faults=not args.no_faults)))
        return
    large = args.large if args.large is not None else 4 * args.small
    print(json.dumps(compare(args.small, large, faults=not args.no_faults)))


if __name__ == "__main__":
    main()
