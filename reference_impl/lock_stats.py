"""Honest per-key-family lock statistics, shared by every lock backend.

The seed's own lock statistics are wrong (docs/seed-design.md: its "wait" includes the time the
holder ran, and failed calls vanish). These keep the two apart: *wait* is request to grant, *hold*
is grant to release, and a wait that ended in a timeout is still a wait (recorded, and counted in
`timeouts`), so a p99 cannot look healthy while every request gives up.

Backends report raw events; grouping by family (`locks.key_family`) happens here so that every
backend groups keys the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import anyio
from hdrh.histogram import HdrHistogram

from reference_impl.locks import key_family

# microseconds, 1 us .. 1 h, 3 significant digits (0.1 % error on every percentile)
_LOWEST_US = 1
_HIGHEST_US = 3_600 * 1_000_000
_SIG_DIGITS = 3
#: keys whose family is remembered (keys are per user or session: the cache is emptied when full)
_FAMILY_CACHE_SIZE = 4096


class LockEventListener(Protocol):
    def __call__(
        self,
        kind: str,
        key: str,
        family: str,
        wait_s: float | None,
        hold_s: float | None,
        token: int | None,
    ) -> None:
        """Called for kind in granted / timeout / cancelled / released, in the order they happen."""


@dataclass(frozen=True)
class FamilySnapshot:
    """One key family at one instant. Times in milliseconds.

    `count` is grants; `p50..max`/`mean` are over every recorded wait, granted or timed out.
    Reports print `count, p50, p95, p99, max, timeouts` (see `report_row`).
    """

    count: int
    timeouts: int
    cancels: int
    p50: float
    p95: float
    p99: float
    max: float
    mean: float
    hold_p50: float
    hold_p99: float
    hold_max: float
    waiters: int
    max_waiters: int

    def report_row(self) -> dict[str, float | int]:
        """The `lock_wait_ms` entry of summary.json (DESIGN.md)."""
        return {
            "count": self.count,
            "p50": self.p50,
            "p95": self.p95,
            "p99": self.p99,
            "max": self.max,
            "timeouts": self.timeouts,
        }


#: what `_Timings.record` reads and writes of an HdrHistogram (hdrh 0.10)
_HDRH_INTERNALS = (
    "counts",
    "sub_bucket_mask",
    "unit_magnitude",
    "sub_bucket_half_count_magnitude",
    "total_count",
    "min_value",
    "max_value",
)


def _new_histogram() -> HdrHistogram:
    return HdrHistogram(_LOWEST_US, _HIGHEST_US, _SIG_DIGITS)


class _Timings:
    """A histogram plus exact max and sum: the histogram rounds, max and mean need not.

    `record` runs twice per lock grant, so it computes the histogram's counter index itself
    (the same arithmetic as `HdrHistogram.record_value`, without its four method calls; a test
    checks both agree) and falls back to `record_value` if hdrh's internals ever change.
    """

    __slots__ = ("hist", "n", "total_s", "max_s", "_counts", "_mask", "_unit", "_bucket_shift")

    def __init__(self) -> None:
        self.hist: HdrHistogram = _new_histogram()
        self.n = 0
        self.total_s = 0.0
        self.max_s = 0.0
        h = self.hist
        fast = all(hasattr(h, name) for name in _HDRH_INTERNALS)
        self._counts: Any = h.counts if fast else None
        self._mask: int = h.sub_bucket_mask if fast else 0
        self._unit: int = h.unit_magnitude if fast else 0
        self._bucket_shift: int = h.sub_bucket_half_count_magnitude if fast else 0

    def record(self, seconds: float) -> None:
        if seconds < 0.0:
            seconds = 0.0  # a clock that steps back must not crash a run
        us = round(seconds * 1_000_000)
        if us > _HIGHEST_US:
            us = _HIGHEST_US
        h = self.hist
        counts = self._counts
        if counts is None:  # pragma: no cover
            h.record_value(us)
        else:
            # bucket: the power of two holding `us`; index: bucket base + offset in the bucket
            unit, shift = self._unit, self._bucket_shift
            bucket = (us | self._mask).bit_length() - unit - shift - 1
            counts[((bucket + 1) << shift) + (us >> (bucket + unit)) - (1 << shift)] += 1
            h.total_count += 1
            if us < h.min_value:
                h.min_value = us
            if us > h.max_value:
                h.max_value = us
        self.n += 1
        self.total_s += seconds
        if seconds > self.max_s:
            self.max_s = seconds

    def pct_ms(self, percentile: float) -> float:
        if self.n == 0:
            return 0.0
        # never above the exact max: the histogram reports a bucket's highest equivalent value
        return min(self.hist.get_value_at_percentile(percentile) / 1000.0, self.max_s * 1000.0)

    def mean_ms(self) -> float:
        return self.total_s / self.n * 1000.0 if self.n else 0.0


@dataclass
class _Family:
    grants: int = 0
    timeouts: int = 0
    cancels: int = 0
    waiters: int = 0
    max_waiters: int = 0
    wait: _Timings = field(default_factory=_Timings)
    hold: _Timings = field(default_factory=_Timings)


class LockStats:
    """Collects lock events from a backend; `snapshot()` summarises them per key family.

    `now` is the clock backends should measure with (virtual under simulation); it is exposed as
    `self.now` so a backend built on these stats shares one clock with them.
    """

    def __init__(
        self,
        now: Callable[[], float] | None = None,
        on_event: LockEventListener | None = None,
        family_of: Callable[[str], str] = key_family,
    ) -> None:
        self.now: Callable[[], float] = now if now is not None else anyio.current_time
        self.on_event = on_event
        self._family_of = family_of
        self._families: dict[str, _Family] = {}
        # each request reports two to four events for one key: parse its family once
        self._key_families: dict[str, tuple[str, _Family]] = {}

    def _fam(self, key: str) -> tuple[str, _Family]:
        return self._key_families.get(key) or self._new_key(key)

    def _new_key(self, key: str) -> tuple[str, _Family]:
        if len(self._key_families) >= _FAMILY_CACHE_SIZE:
            self._key_families.clear()
        family = self._family_of(key)
        fam = self._families.get(family)
        if fam is None:
            fam = self._families[family] = _Family()
        found = self._key_families[key] = (family, fam)
        return found

    def _emit(
        self,
        kind: str,
        key: str,
        family: str,
        wait_s: float | None = None,
        hold_s: float | None = None,
        token: int | None = None,
    ) -> None:
        if self.on_event is not None:
            self.on_event(kind, key, family, wait_s, hold_s, token)

    def waiting_started(self, key: str) -> None:
        """A request found the key held and began to block."""
        _, fam = self._fam(key)
        fam.waiters += 1
        fam.max_waiters = max(fam.max_waiters, fam.waiters)

    def waiter_left(self, key: str) -> None:
        """A blocked request stopped blocking (granted, timed out or cancelled)."""
        _, fam = self._fam(key)
        fam.waiters = max(0, fam.waiters - 1)

    def granted(self, key: str, wait_s: float, token: int | None = None) -> None:
        """The key was granted after `wait_s` seconds (0 when uncontended)."""
        # the lock's hot path, twice per grant with `released`: inlined lookups, no `_emit`
        family, fam = self._key_families.get(key) or self._new_key(key)
        fam.grants += 1
        fam.wait.record(wait_s)
        if self.on_event is not None:
            self.on_event("granted", key, family, wait_s, None, token)

    def timed_out(self, key: str, wait_s: float | None) -> None:
        """A request gave up after `wait_s`; `None` counts it without a wait sample."""
        family, fam = self._fam(key)
        fam.timeouts += 1
        if wait_s is not None:
            fam.wait.record(wait_s)
        self._emit("timeout", key, family, wait_s=wait_s)

    def cancelled(self, key: str, wait_s: float) -> None:
        """A waiter was cancelled from outside; it was not granted and did not time out."""
        family, fam = self._fam(key)
        fam.cancels += 1
        self._emit("cancelled", key, family, wait_s=wait_s)

    def released(self, key: str, hold_s: float, token: int | None = None) -> None:
        """A holder let go after holding for `hold_s`."""
        family, fam = self._key_families.get(key) or self._new_key(key)
        fam.hold.record(hold_s)
        if self.on_event is not None:
            self.on_event("released", key, family, None, hold_s, token)

    def snapshot(self) -> dict[str, FamilySnapshot]:
        return {name: self._snap(fam) for name, fam in sorted(self._families.items())}

    @staticmethod
    def _snap(fam: _Family) -> FamilySnapshot:
        return FamilySnapshot(
            count=fam.grants,
            timeouts=fam.timeouts,
            cancels=fam.cancels,
            p50=fam.wait.pct_ms(50),
            p95=fam.wait.pct_ms(95),
            p99=fam.wait.pct_ms(99),
            max=fam.wait.max_s * 1000.0,
            mean=fam.wait.mean_ms(),
            hold_p50=fam.hold.pct_ms(50),
            hold_p99=fam.hold.pct_ms(99),
            hold_max=fam.hold.max_s * 1000.0,
            waiters=fam.waiters,
            max_waiters=fam.max_waiters,
        )

    def report(self) -> dict[str, dict[str, float | int]]:
        """`lock_wait_ms` for summary.json: per family count, p50, p95, p99, max, timeouts."""
        return {name: snap.report_row() for name, snap in self.snapshot().items()}


def percentiles_ms(waits_s: Iterable[float], percentiles: Sequence[float]) -> list[float]:
    """The percentiles `LockStats` reports (HdrHistogram, capped at the exact max), of any
    waits: a chart drawing them shows the same numbers as the summary's table."""
    timings = _Timings()
    for wait in waits_s:
        timings.record(wait)
    return [timings.pct_ms(q) for q in percentiles]
