"""Where a run's time goes: a cProfile run folded into a few buckets by source path.

Per-function profiles of a simulation are flat (thousands of small functions), so the question
"is it the engine, the SDK, the fake or the harness?" needs aggregation. A bucket's `self_s` is
the time spent in its own code (tottime), plus the standard library and builtins it calls (a
`json.dumps` from the history counts as history), split by caller. cProfile's cumulative times
do not add up across coroutines (each resume is a call, nested buckets overlap), so inclusive
time is given only for a few named entry points (`ENTRY_POINTS`), each on its own.
"""

from __future__ import annotations

import cProfile
import pstats
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: (bucket, path fragments) in match order: the first bucket with a matching fragment wins
BUCKETS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "store (mongomock + store port)",
        (
            "/mongomock/",
            "/pymongo/",
            "/bson/",
            "reference_impl/store.py",
            "reference_impl/embedded_store.py",
            "simulator/store_observer.py",
        ),
    ),
    (
        "locks (memory locks + stats)",
        (
            "reference_impl/memory_locks.py",
            "reference_impl/lock_stats.py",
            "reference_impl/locks.py",
            "/hdrh/",
        ),
    ),
    ("engine (reference_impl/)", ("/reference_impl/",)),
    ("stripe SDK", ("site-packages/stripe/",)),
    ("fake Stripe (simulator/fake_stripe)", ("simulator/fake_stripe/",)),
    ("history (simulator/history.py)", ("simulator/history.py",)),
    ("harness (simulator/ rest)", ("/simulator/",)),
    ("scheduler (trio/anyio)", ("/trio/", "/anyio/", "/outcome/", "/sniffio/")),
    ("httpx (case-insensitive response headers only)", ("/httpx/", "/httpcore/")),
)
OTHER = "other (stdlib, builtins)"


def bucket_of(filename: str) -> str:
    for name, fragments in BUCKETS:
        if any(f in filename for f in fragments):
            return name
    return OTHER


@dataclass(frozen=True)
class BucketTime:
    bucket: str
    self_s: float

    def as_dict(self, total_s: float) -> dict[str, Any]:
        return {
            "bucket": self.bucket,
            "self_s": round(self.self_s, 3),
            "self_pct": round(100 * self.self_s / total_s, 1) if total_s else 0.0,
        }


def fold(stats: pstats.Stats) -> tuple[list[BucketTime], float]:
    """Buckets sorted by self time, and the total profiled time."""
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    shares = _Attribution(raw)
    self_s: dict[str, float] = {}
    for func, (_cc, _nc, tt, _ct, _callers) in raw.items():
        for bucket, share in shares.of(func).items():
            self_s[bucket] = self_s.get(bucket, 0.0) + tt * share
    total = sum(self_s.values())
    names = sorted(self_s, key=lambda b: -self_s[b])
    return [BucketTime(b, self_s[b]) for b in names], total


class _Attribution:
    """Which buckets a function's self time belongs to: its own, or for stdlib and builtins,
    its callers' (by the time each caller spent in it), followed up the stack."""

    def __init__(self, raw: dict[Any, Any]) -> None:
        self._raw = raw
        self._memo: dict[Any, dict[str, float]] = {}

    def of(self, func: Any, visiting: frozenset[Any] = frozenset()) -> dict[str, float]:
        found = self._memo.get(func)
        if found is not None:
            return found
        own = bucket_of(func[0])
        entry = self._raw.get(func)
        if own != OTHER or entry is None or func in visiting or not entry[4]:
            found = {own: 1.0}
        else:
            found = self._from_callers(entry[4], visiting | {func})
        if not visiting:
            self._memo[func] = found
        return found

    def _from_callers(self, callers: dict[Any, Any], visiting: frozenset[Any]) -> dict[str, float]:
        weights = {caller: timing[2] for caller, timing in callers.items()}
        total = sum(weights.values())
        if total <= 0:
            weights = {caller: 1.0 for caller in callers}
            total = float(len(callers))
        shares: dict[str, float] = {}
        for caller, weight in weights.items():
            for bucket, share in self.of(caller, visiting).items():
                shares[bucket] = shares.get(bucket, 0.0) + share * weight / total
        return shares


#: (label, file fragment, function name): inclusive time worth knowing, each counted alone
ENTRY_POINTS: tuple[tuple[str, str, str], ...] = (
    ("engine: create_purchase", "reference_impl/", "create_purchase"),
    ("engine: handle_webhook", "reference_impl/", "handle_webhook"),
    ("engine: reconcile", "reference_impl/", "reconcile"),
    (
        "stripe SDK request (the simulated wire and fake Stripe included)",
        "stripe/_stripe_service.py",
        "_request_async",
    ),
    (
        "fake Stripe on the simulated wire (network, server, API)",
        "simulator/fake_stripe/transport.py",
        "handle",
    ),
    (
        "webhook verification: verify_event (the SDK's HMAC check, json)",
        "reference_impl/webhook_signature.py",
        "verify_event",
    ),
    ("store calls (observer and mongomock)", "reference_impl/store.py", "_call"),
    ("history: History.record", "simulator/history.py", "record"),
    ("lock requests: MemoryLockService._acquire", "reference_impl/memory_locks.py", "_acquire"),
)


def entry_points(stats: pstats.Stats) -> list[dict[str, Any]]:
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    rows = []
    for label, fragment, name in ENTRY_POINTS:
        cumulative = sum(
            entry[3] for (file, _line, fn), entry in raw.items() if fn == name and fragment in file
        )
        rows.append({"entry_point": label, "inclusive_s": round(cumulative, 3)})
    return rows


def top_functions(stats: pstats.Stats, n: int = 15) -> list[dict[str, Any]]:
    """The `n` functions with the most self time, for the detail table."""
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    rows = sorted(raw.items(), key=lambda item: -item[1][2])[:n]
    return [
        {
            "function": f"{_short(file)}:{line}({name})",
            "calls": nc,
            "self_s": round(tt, 3),
            "cumulative_s": round(ct, 3),
        }
        for (file, line, name), (_cc, nc, tt, ct, _callers) in rows
    ]


def profile(fn: Callable[[], Any]) -> tuple[Any, pstats.Stats]:
    """Run `fn` under cProfile; its result and the stats."""
    profiler = cProfile.Profile()
    result = profiler.runcall(fn)
    return result, pstats.Stats(profiler)


def _short(path: str) -> str:
    for marker in ("site-packages/", "/work/main/", "python3.11/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path
