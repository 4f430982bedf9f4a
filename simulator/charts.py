"""PNG charts of one stored run, read from its history.jsonl in a single streaming pass.

The history is read line by line into compact per-chart series (`RunData`); only what a chart
plots is kept. Times on every axis are virtual (the simulated clock; wall-clock for a run in real
time, which says so), in the unit that suits
the span shown. The charts are meant to be read at a glance in report.html:

- lock_wait_distribution.png: how long lock requests waited, per key family
- lock_wait_over_time.png: p50/p99 lock wait over time, with the nemesis' fault windows
- operations.png: client operations per second by outcome (ok / refused / fail / info)
- seats.png: class-rep seat counter vs seats actually held vs the limit, per program
- webhooks.png: delivery attempts per event, and response codes over time
"""

from __future__ import annotations

import json
from array import array
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from reference_impl.lock_stats import percentiles_ms  # noqa: E402
from simulator.checkers.base import FinalFacts  # noqa: E402
from simulator.checkers.counter import held_seats  # noqa: E402

CHART_FILES = (
    "lock_wait_distribution.png",
    "lock_wait_over_time.png",
    "operations.png",
    "seats.png",
    "webhooks.png",
)
SEAT_STATUSES = frozenset({"pending", "completed"})
HELD_LABEL = (
    "seats held (completed, or pending while its Checkout Session is open;\n"
    "at the end: as counter_consistent judges)"
)
#: an op.fail with one of these codes is the engine saying no as designed, not an error
REFUSALS = frozenset({"limit_reached", "already_purchased", "not_cancellable", "not_found"})
OUTCOME_COLORS = {"ok": "#2ca02c", "refused": "#7f7f7f", "fail": "#d62728", "info": "#ff7f0e"}
OUTCOME_LABELS = {
    "ok": "ok: done",
    "refused": "fail, refused as designed\n(limit reached, already bought, ...)",
    "fail": "fail, an error\n(busy, Stripe failed, instance down)",
    "info": "info: outcome unknown\n(timed out, may have happened)",
}
FAULT_PALETTE = plt.get_cmap("tab20").colors
DPI = 110
MAX_SEAT_PANELS = 6
#: legends sit right of the plot so they never hide data
OUTSIDE: dict[str, Any] = {"loc": "upper left", "bbox_to_anchor": (1.01, 1.0), "borderaxespad": 0}


# ---- the data a chart needs, read in one pass


@dataclass
class FamilyWaits:
    """Lock waits of one key family, in milliseconds, with the virtual time each wait ended."""

    times: array = field(default_factory=lambda: array("d"))
    waits_ms: array = field(default_factory=lambda: array("d"))
    timed_out: array = field(default_factory=lambda: array("b"))
    cancelled: int = 0

    def add(self, t: float, wait_s: float, timeout: bool) -> None:
        self.times.append(t)
        self.waits_ms.append(wait_s * 1000.0)
        self.timed_out.append(1 if timeout else 0)


@dataclass
class FaultWindow:
    kind: str
    target: str | None
    start: float
    end: float


@dataclass
class SeatSeries:
    """One program's class-rep seats over time: the stored counter and the seats really held."""

    program: str
    counter: list[tuple[float, int]] = field(default_factory=lambda: [(0.0, 0)])
    held: list[tuple[float, int]] = field(default_factory=lambda: [(0.0, 0)])
    limit: int | None = None

    @property
    def final_counter(self) -> int:
        return self.counter[-1][1]

    @property
    def final_held(self) -> int:
        return self.held[-1][1]


@dataclass
class RunData:
    """Everything the charts plot, from one history."""

    name: str = ""
    clock: str = "virtual"  # "wall-clock" for a run in real time (Redis locks, load --wall-clock)
    end_t: float = 0.0
    faults_stop_t: float | None = None  # liveness.start: the nemesis is off from here on
    locks: dict[str, FamilyWaits] = field(default_factory=lambda: defaultdict(FamilyWaits))
    faults: list[FaultWindow] = field(default_factory=list)
    markers: list[tuple[float, str, str]] = field(default_factory=list)  # (t, kind, instance)
    ops: dict[str, array] = field(default_factory=lambda: defaultdict(lambda: array("d")))
    seats: dict[str, SeatSeries] = field(default_factory=dict)
    attempts: Counter[str] = field(default_factory=Counter)
    given_up: int = 0
    responses: list[tuple[float, str]] = field(default_factory=list)

    @property
    def active_end(self) -> float:
        """End of the workload phase (clients and faults), or of the run if it never ended."""
        last_op = max((a[-1] for a in self.ops.values() if len(a)), default=0.0)
        return max(self.faults_stop_t or self.end_t, last_op) or 1.0


def iter_history(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)


def read_run(run_dir: Path) -> RunData:
    """Stream run_dir/history.jsonl once into `RunData` (limits fall back to final_state.json)."""
    reader = _Reader()
    for entry in iter_history(run_dir / "history.jsonl"):
        reader.feed(entry)
    data = reader.finish()
    _limits_from_final_state(run_dir / "final_state.json", data)
    _held_as_judged(run_dir, data)
    return data


def _held_as_judged(run_dir: Path, data: RunData) -> None:
    """End each program's held line on the number counter_consistent judges: a pending purchase
    whose Checkout Session has expired no longer holds a seat (the same `held_seats`)."""
    try:
        final_state = json.loads((run_dir / "final_state.json").read_text(encoding="utf-8"))
        ledgers = json.loads((run_dir / "ledgers.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    if not isinstance(final_state, dict) or not isinstance(ledgers, dict):
        return
    facts = FinalFacts(final_state, ledgers, quiescent=True, end_t=data.end_t)
    for program, series in data.seats.items():
        held = len(held_seats(program, facts))
        if series.held[-1][1] != held:
            series.held.append((data.end_t, held))


class _Reader:
    def __init__(self) -> None:
        self.data = RunData()
        self.open_faults: dict[tuple[str, str | None], list[float]] = defaultdict(list)
        self.purchases: dict[str, tuple[str | None, bool, bool]] = {}  # id → program, rep, holds
        self.held: Counter[str] = Counter()

    def feed(self, e: dict[str, Any]) -> None:
        d, kind, t = self.data, e.get("type", ""), float(e.get("t", 0.0))
        d.end_t = max(d.end_t, t)
        if kind in ("lock.granted", "lock.timeout") and e.get("wait_s") is not None:
            d.locks[e.get("family") or "?"].add(t, float(e["wait_s"]), kind == "lock.timeout")
        elif kind == "lock.cancelled":
            d.locks[e.get("family") or "?"].cancelled += 1
        elif kind in ("op.ok", "op.fail", "op.info"):
            refused = kind == "op.fail" and e.get("error") in REFUSALS
            d.ops["refused" if refused else kind[3:]].append(t)
        elif kind == "store.write":
            self._store_write(e, t)
        elif kind == "webhook.attempt":
            d.attempts[str(e.get("event_id"))] += 1
        elif kind == "webhook.response":
            d.responses.append((t, _response_label(e)))
        elif kind == "webhook.given_up":
            d.given_up += 1
        elif kind == "fault.start":
            self.open_faults[(e.get("kind", "?"), e.get("target"))].append(t)
        elif kind == "fault.end":
            starts = self.open_faults.get((e.get("kind", "?"), e.get("target")))
            if starts:
                d.faults.append(FaultWindow(e.get("kind", "?"), e.get("target"), starts.pop(0), t))
        elif kind in ("instance.crash", "instance.pause", "instance.resume"):
            d.markers.append((t, kind.split(".")[1], str(e.get("instance", ""))))
        elif kind == "liveness.start":
            d.faults_stop_t = t
        elif kind == "run.start":
            parts = (e.get("scenario"), e.get("seed"), e.get("engine"))
            if all(p is not None for p in parts):
                d.name = f"{parts[0]} · seed {parts[1]} · {parts[2]}"
            if e.get("clock") == "wall":
                d.clock = "wall-clock"

    def _store_write(self, e: dict[str, Any], t: float) -> None:
        doc, doc_id = e.get("doc"), e.get("id")
        if not isinstance(doc, dict) or doc_id is None:
            return
        if e.get("coll") == "programs" and doc.get("class_rep_count") is not None:
            series = self._series(str(doc_id))
            if series.counter[-1][1] != doc["class_rep_count"]:
                series.counter.append((t, int(doc["class_rep_count"])))
            if doc.get("class_rep_limit") is not None:
                series.limit = int(doc["class_rep_limit"])
        elif e.get("coll") == "purchases":
            program, rep, holds = self.purchases.get(str(doc_id), (None, False, False))
            program = doc.get("program_id", program)
            rep = bool(doc.get("class_rep", rep))
            now_holds = (
                rep
                and doc.get("status") in SEAT_STATUSES
                and not str(e.get("op", "")).startswith("delete")
            )
            self.purchases[str(doc_id)] = (program, rep, now_holds)
            if program is not None and now_holds != holds:
                self.held[program] += 1 if now_holds else -1
                self._series(program).held.append((t, self.held[program]))

    def _series(self, program: str) -> SeatSeries:
        return self.data.seats.setdefault(program, SeatSeries(program))

    def finish(self) -> RunData:
        d = self.data
        for (kind, target), starts in self.open_faults.items():
            end = d.faults_stop_t if d.faults_stop_t is not None else d.end_t
            d.faults += [FaultWindow(kind, target, s, max(s, end)) for s in starts]
        d.faults.sort(key=lambda w: (w.start, w.kind))
        return d


def _response_label(e: dict[str, Any]) -> str:
    status = e.get("status")
    if isinstance(status, int):
        return str(status)
    return str(e.get("error") or "no response")


def _limits_from_final_state(path: Path, data: RunData) -> None:
    if not path.exists():
        return
    try:
        programs = json.loads(path.read_text(encoding="utf-8")).get("programs", [])
    except (OSError, ValueError):
        return
    for doc in programs:
        series = data.seats.get(str(doc.get("_id")))
        if series is None and doc.get("class_rep_limit") is not None:
            series = data.seats.setdefault(str(doc["_id"]), SeatSeries(str(doc["_id"])))
        if series is not None and series.limit is None and doc.get("class_rep_limit") is not None:
            series.limit = int(doc["class_rep_limit"])


# ---- time axes


@dataclass(frozen=True)
class TimeUnit:
    label: str
    seconds: float

    def scale(self, t: Any) -> Any:
        return np.asarray(t, dtype=float) / self.seconds


def time_unit(span_s: float) -> TimeUnit:
    """Seconds for short spans, then minutes, hours, days: ticks stay readable numbers."""
    if span_s <= 600:
        return TimeUnit("s", 1.0)
    if span_s <= 3 * 3600:
        return TimeUnit("min", 60.0)
    if span_s <= 3 * 86400:
        return TimeUnit("h", 3600.0)
    return TimeUnit("days", 86400.0)


def bucket_width(span_s: float, target: int = 60) -> float:
    """A round bucket width that cuts `span_s` into about `target` buckets."""
    steps = (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200)
    steps += (3 * 3600, 6 * 3600, 12 * 3600, 86400)
    want = max(span_s, 1e-9) / target
    return next((s for s in steps if s >= want), steps[-1])


def _bucket_label(width_s: float) -> str:
    if width_s < 60:
        return f"{width_s:g} s"
    if width_s < 3600:
        return f"{width_s / 60:g} min"
    return f"{width_s / 3600:g} h"


# ---- drawing helpers


def _figure(rows: int = 1, cols: int = 1, height: float = 5.5, **kw: Any) -> tuple[Figure, Any]:
    fig, axes = plt.subplots(rows, cols, figsize=(11, height), dpi=DPI, squeeze=False, **kw)
    return fig, axes


def _fault_colors(data: RunData) -> dict[str, Any]:
    kinds = sorted({w.kind for w in data.faults})
    return {k: FAULT_PALETTE[(2 * i) % len(FAULT_PALETTE)] for i, k in enumerate(kinds)}


def _shade_faults(ax: Axes, data: RunData, unit: TimeUnit, colors: dict[str, Any]) -> None:
    """Shade each fault window; one that covers (nearly) the whole phase is left to the strip."""
    span = data.active_end
    for w in data.faults:
        if w.end - w.start >= 0.9 * span:
            continue
        ax.axvspan(unit.scale(w.start), unit.scale(w.end), color=colors[w.kind], alpha=0.13, lw=0)
    if data.faults_stop_t is not None:
        ax.axvline(unit.scale(data.faults_stop_t), color="0.35", ls=":", lw=1)


def _nemesis_strip(ax: Axes, data: RunData, unit: TimeUnit, colors: dict[str, Any]) -> None:
    """Jepsen-style: one row per fault kind with its active windows; crashes/pauses as marks."""
    rows = sorted({w.kind for w in data.faults})
    marks = sorted({m[1] for m in data.markers})
    labels = rows + [f"instance {m}" for m in marks]
    for i, kind in enumerate(rows):
        spans = [
            (unit.scale(w.start), unit.scale(w.end - w.start))
            for w in data.faults
            if w.kind == kind
        ]
        ax.broken_barh(spans, (i - 0.35, 0.7), color=colors[kind], alpha=0.8)
    styles = {"crash": ("X", "#d62728"), "pause": ("v", "#9467bd"), "resume": ("^", "#17becf")}
    for j, mark in enumerate(marks):
        ts = [unit.scale(m[0]) for m in data.markers if m[1] == mark]
        shape, color = styles.get(mark, ("o", "0.3"))
        ax.plot(ts, [len(rows) + j] * len(ts), ls="", marker=shape, color=color, ms=8)
    if data.faults_stop_t is not None:
        ax.axvline(unit.scale(data.faults_stop_t), color="0.35", ls=":", lw=1)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set_ylim(-0.6, max(len(labels), 1) - 0.4)
    ax.invert_yaxis()
    ax.grid(axis="x", alpha=0.3)
    if not labels:
        ax.set_yticks([])
        ax.text(
            0.5, 0.5, "no faults", transform=ax.transAxes, ha="center", va="center", color="0.4"
        )
    ax.set_ylabel("nemesis", fontsize=8)


def _with_nemesis(data: RunData, height: float = 6.0) -> tuple[Figure, Axes, Axes]:
    strip_rows = len({w.kind for w in data.faults}) + len({m[1] for m in data.markers})
    strip = 0.35 + 0.28 * max(strip_rows, 1)
    fig, axes = plt.subplots(
        2,
        1,
        figsize=(11, height + strip),
        dpi=DPI,
        sharex=True,
        gridspec_kw={"height_ratios": [height, strip]},
    )
    return fig, axes[0], axes[1]


@dataclass(frozen=True)
class _Frame:
    """The time axis of a bucketed chart: the active window, its unit and bucket width."""

    end: float
    unit: TimeUnit
    width: float
    colors: dict[str, Any]


def _fault_shaded(data: RunData) -> tuple[Figure, Axes, Axes, _Frame]:
    """A chart over the active window with the nemesis' fault windows shaded behind it."""
    fig, ax, strip = _with_nemesis(data)
    end = data.active_end
    frame = _Frame(end, time_unit(end), bucket_width(end), _fault_colors(data))
    _shade_faults(ax, data, frame.unit, frame.colors)
    return fig, ax, strip, frame


def _finish_strip(fig: Figure, strip: Axes, data: RunData, frame: _Frame, note: str) -> Figure:
    """Draw the nemesis strip under the chart and label the shared time axis."""
    _nemesis_strip(strip, data, frame.unit, frame.colors)
    # a little room past the end, so the liveness line is not drawn on the plot's border
    strip.set_xlim(0, frame.unit.scale(frame.end) * 1.04)
    strip.set_xlabel(f"{data.clock} time ({frame.unit.label}); {note}")
    fig.tight_layout()
    return fig


def _empty(ax: Axes, text: str) -> None:
    ax.text(
        0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", fontsize=12, color="0.35"
    )


def _percentile(values_ms: Any, q: float) -> float:
    """The summary's percentile (LockStats' HdrHistogram), so a chart and the table agree."""
    return percentiles_ms(np.asarray(values_ms, dtype=float) / 1000.0, [q])[0]


def family_percentiles(fw: FamilyWaits) -> dict[int, float]:
    """p50/p95/p99 of one family's waits as the distribution chart draws them (ms)."""
    p50, p95, p99 = percentiles_ms(np.asarray(fw.waits_ms) / 1000.0, [50, 95, 99])
    return {50: p50, 95: p95, 99: p99}


# ---- (a) lock wait distribution


def chart_lock_wait_distribution(data: RunData) -> Figure:
    families = sorted(data.locks)
    fig, axes = _figure(
        max(len(families), 1), 1, height=1.2 + 2.6 * max(len(families), 1), sharex=True
    )
    fig.suptitle("Lock wait distribution per key family (granted and timed-out waits)", fontsize=13)
    if not families:
        _empty(axes[0][0], "no lock requests in this run")
        axes[0][0].set_xlabel("lock wait (ms, log scale)")
        return fig
    positive_all = np.concatenate([np.asarray(data.locks[f].waits_ms) for f in families])
    positive_all = positive_all[positive_all > 0]
    lo = float(positive_all.min()) if len(positive_all) else 0.1
    hi = float(positive_all.max()) if len(positive_all) else 1000.0
    bins = np.geomspace(lo / 1.5, hi * 1.5, 40)
    for ax, family in zip((row[0] for row in axes), families, strict=True):
        fw = data.locks[family]
        waits = np.asarray(fw.waits_ms)
        timed = np.asarray(fw.timed_out, dtype=bool)
        zeros = int((waits == 0).sum())
        pos_ok = waits[(waits > 0) & ~timed]
        pos_to = waits[(waits > 0) & timed]
        label_ok = f"granted after waiting (n={len(pos_ok)})"
        label_to = f"timed out (n={len(pos_to)})"
        ax.hist(
            [pos_ok, pos_to],
            bins=bins,
            stacked=True,
            color=["#1f77b4", "#d62728"],
            label=[label_ok, label_to],
        )
        ax.set_xscale("log")
        ax.plot([], [], ls="", label=f"0 ms waits: {zeros} of {len(waits)} (not on a log axis)")
        if fw.cancelled:
            ax.plot([], [], ls="", label=f"cancelled while waiting: {fw.cancelled}")
        drawn = family_percentiles(fw)
        for q, style in ((50, ":"), (95, "--"), (99, "-.")):
            value = drawn[q]
            if value > 0:
                ax.axvline(value, color="k", ls=style, lw=1.3, label=f"p{q} = {value:,.1f} ms")
            else:
                ax.plot([], [], ls="", label=f"p{q} = 0 ms")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        if not len(pos_ok) and not len(pos_to):
            _empty(ax, f"all {len(waits)} waits were 0 ms")
            ax.set_ylim(0, 1)
            ax.set_yticks([])
        ax.set_title(f"{family}: {len(waits)} lock requests", fontsize=11, loc="left")
        ax.set_ylabel("lock requests")
        ax.legend(fontsize=8, **OUTSIDE)
        ax.grid(alpha=0.3)
    axes[-1][0].set_xlabel(f"lock wait (ms of {data.clock} time, log scale)")
    fig.tight_layout()
    return fig


# ---- (b) lock wait over time


def chart_lock_wait_over_time(data: RunData) -> Figure:
    fig, ax, strip, frame = _fault_shaded(data)
    end, unit, width = frame.end, frame.unit, frame.width
    later, top = 0, 0.0
    palette = plt.get_cmap("tab10").colors
    for i, family in enumerate(sorted(data.locks)):
        fw = data.locks[family]
        times, waits = np.asarray(fw.times), np.asarray(fw.waits_ms)
        inside = times <= end
        later += int((~inside).sum())
        times, waits = times[inside], waits[inside]
        if not len(times):
            continue
        idx = np.floor(times / width).astype(int)
        centers, p50, p99 = [], [], []
        for b in np.unique(idx):
            sel = waits[idx == b]
            centers.append((b + 0.5) * width)
            p50.append(_percentile(sel, 50))
            p99.append(_percentile(sel, 99))
        color = palette[i % len(palette)]
        top = max(top, *p99)
        x = unit.scale(centers)
        ax.plot(x, p50, color=color, marker="o", ms=3, lw=1.2, label=f"{family} p50")
        ax.plot(x, p99, color=color, marker="^", ms=4, lw=1.2, ls="--", label=f"{family} p99")
    if not data.locks:
        _empty(ax, "no lock requests in this run")
    ax.set_yscale("symlog", linthresh=1.0)
    ax.set_ylim(0, max(top * 3, 10.0))
    ax.set_ylabel("lock wait (ms, symlog)")
    title = f"Lock wait p50 / p99 per {_bucket_label(width)} bucket, with fault windows"
    ax.set_title(title, fontsize=13)
    if later:
        ax.text(
            0.99,
            0.97,
            f"{later} lock requests after this window not shown",
            transform=ax.transAxes,
            ha="right",
            va="top",
            fontsize=8,
            color="0.35",
        )
    if data.locks:
        ax.legend(fontsize=8, **OUTSIDE)
    ax.grid(alpha=0.3)
    return _finish_strip(fig, strip, data, frame, "dotted line: faults stop, liveness phase starts")


# ---- (c) operations per second


def chart_operations(data: RunData) -> Figure:
    fig, ax, strip, frame = _fault_shaded(data)
    end, unit, width = frame.end, frame.unit, frame.width
    edges = np.arange(0.0, end + width, width)
    for outcome in ("ok", "refused", "fail", "info"):
        times = np.asarray(data.ops.get(outcome, array("d")))
        counts, _ = np.histogram(times, bins=edges)
        rate = counts / width
        ax.stairs(
            rate,
            unit.scale(edges),
            color=OUTCOME_COLORS[outcome],
            lw=1.6,
            label=f"{OUTCOME_LABELS[outcome]}: {len(times)}",
        )
    if not any(len(a) for a in data.ops.values()):
        _empty(ax, "no client operations in this run")
    ax.set_ylim(bottom=0)
    ax.set_ylabel(f"operations completed per {data.clock} second")
    ax.set_title(f"Client operations by outcome ({_bucket_label(width)} buckets)", fontsize=13)
    ax.legend(fontsize=9, title="outcome", title_fontsize=8, **OUTSIDE)
    ax.grid(alpha=0.3)
    return _finish_strip(fig, strip, data, frame, "info = outcome unknown (may have happened)")


# ---- (d) class-rep seats


def time_panels(active_end: float, end: float) -> list[tuple[float, float]]:
    """[0, end], or the workload phase and the (much longer) liveness phase side by side.

    Stripe retries for days and sessions expire after hours, so a run's tail can be a hundred
    times longer than the part where clients act; one linear axis would squash that part flat.
    """
    if end <= 3 * active_end:
        return [(0.0, max(end, 1e-9))]
    return [(0.0, active_end), (active_end, end)]


def _panel_axes(
    data: RunData, end: float, rows: int, height: float, lead: list[float] | None = None
) -> tuple[Figure, list[list[Axes]], list[tuple[float, float]]]:
    """A grid whose time columns show `time_panels`; `lead` adds columns before them."""
    panels = time_panels(data.active_end, end)
    ratios = (lead or []) + ([3.0, 2.0] if len(panels) == 2 else [5.0])
    fig, grid = plt.subplots(
        rows,
        len(ratios),
        figsize=(11, height),
        dpi=DPI,
        squeeze=False,
        gridspec_kw={"width_ratios": ratios},
    )
    axes = [list(row) for row in grid]
    first = len(lead or [])
    for row in axes:
        for ax in row[first + 1 :]:
            ax.sharey(row[first])
            ax.tick_params(labelleft=False)
    return fig, axes, panels


def _label_panels(
    rows: list[list[Axes]], panels: list[tuple[float, float]], clock: str = "virtual"
) -> None:
    """Set each time column's range in its own unit; name the unit and phase under the last row."""
    for row in rows:
        for ax, (lo, hi) in zip(row, panels, strict=True):
            unit = time_unit(hi)
            ax.set_xlim(unit.scale(lo), unit.scale(hi))
    for ax, (lo, hi) in zip(rows[-1], panels, strict=True):
        unit = time_unit(hi)
        if len(panels) == 1:
            ax.set_xlabel(f"{clock} time ({unit.label})")
        elif lo == 0:
            ax.set_xlabel(f"{clock} time ({unit.label})\nworkload phase (clients, faults)")
        else:
            ax.set_xlabel(f"{clock} time ({unit.label})\nliveness phase (faults off)")


def chart_seats(data: RunData) -> Figure:
    programs = sorted(data.seats, key=lambda p: (-len(data.seats[p].held), p))[:MAX_SEAT_PANELS]
    programs.sort()
    rows = max(len(programs), 1)
    end = max(data.end_t, 1.0)
    fig, axes, panels = _panel_axes(data, end, rows, 1.3 + 2.7 * rows)
    fig.suptitle("Class-rep seats per program: stored counter vs seats actually held", fontsize=13)
    if not programs:
        _empty(axes[0][0], "no class-rep programs written in this run")
    for row, program in zip(axes, programs, strict=False):
        s = data.seats[program]
        for ax, (_lo, hi) in zip(row, panels, strict=True):
            unit = time_unit(hi)
            if s.limit is not None:
                ax.axhline(
                    s.limit, color="#d62728", ls="--", lw=1.2, label=f"limit ({s.limit})", zorder=4
                )
            for points, color, label, lw, z in (
                (s.counter, "#1f77b4", "class_rep_count (stored counter)", 2.6, 2),
                (s.held, "#ff7f0e", HELD_LABEL, 1.5, 3),
            ):
                xs = [t for t, _ in points] + [end]
                ys = [v for _, v in points] + [points[-1][1]]
                ax.step(unit.scale(xs), ys, where="post", color=color, lw=lw, label=label, zorder=z)
            ax.grid(alpha=0.3)
        mismatch = s.final_counter != s.final_held
        over = s.limit is not None and max(v for _, v in s.held) > s.limit
        verdict = "MISMATCH" if mismatch else "counter matches"
        if over:
            verdict += f"; held exceeded the limit (max {max(v for _, v in s.held)})"
        row[0].set_title(
            f"{program}: at the end counter = {s.final_counter}, held = {s.final_held} ({verdict})",
            fontsize=11,
            loc="left",
            color="#d62728" if mismatch or over else "black",
        )
        top = max([v for _, v in s.counter + s.held] + [s.limit or 0, 1])
        low = min([v for _, v in s.counter + s.held] + [0])
        row[0].set_ylim(low - 0.5, top + max(1, 0.08 * top))
        row[0].yaxis.set_major_locator(MaxNLocator(integer=True))
        row[0].set_ylabel("seats")
        row[-1].legend(fontsize=8, loc="lower right", framealpha=0.9)
    _label_panels([row[-len(panels) :] for row in axes], panels, data.clock)
    fig.tight_layout()
    return fig


# ---- (e) webhooks


#: colours for webhook outcomes that are not an HTTP status (the request never got one)
NO_STATUS_COLORS = ("#7f7f7f", "#9467bd", "#17becf", "#e377c2", "#c5b0d5", "#8c564b")


def status_colors(labels: list[str]) -> dict[str, Any]:
    """2xx green, 4xx amber, 500 red, other 5xx brown; errors without a status get distinct hues."""
    colors: dict[str, Any] = {}
    others = 0
    for label in labels:
        if label.isdigit():
            code = int(label)
            if code < 300:
                colors[label] = "#2ca02c"
            elif code < 500:
                colors[label] = "#bcbd22" if code == 400 else "#ff7f0e"
            else:
                colors[label] = "#d62728" if code == 500 else "#8c564b"
        else:
            colors[label] = NO_STATUS_COLORS[others % len(NO_STATUS_COLORS)]
            others += 1
    return colors


def chart_webhooks(data: RunData) -> Figure:
    end = max((t for t, _ in data.responses), default=1.0)
    fig, axes, panels = _panel_axes(data, end, 1, 5.8, lead=[2.6])
    left, *right = axes[0]
    fig.suptitle("Webhook delivery", fontsize=13)
    per_event = Counter(data.attempts.values())
    if per_event:
        xs = sorted(per_event)
        bars = left.bar(xs, [per_event[x] for x in xs], color="#1f77b4", width=0.7)
        left.bar_label(bars, fontsize=8)
        left.set_xticks(xs)
    else:
        _empty(left, "no webhook events")
    left.yaxis.set_major_locator(MaxNLocator(integer=True))
    left.set_xlabel("delivery attempts per event")
    left.set_ylabel("events")
    left.set_title(
        f"{len(data.attempts)} events, {sum(data.attempts.values())} attempts, "
        f"{data.given_up} given up",
        fontsize=10,
    )
    left.grid(axis="y", alpha=0.3)
    labels = sorted({lab for _, lab in data.responses}, key=lambda s: (not s.isdigit(), s))
    colors = status_colors(labels)
    widths = []
    last_edges: list[float] = []
    tallest = 0.0
    for ax, (lo, hi) in zip(right, panels, strict=True):
        unit = time_unit(hi)
        width = bucket_width(hi - lo, target=30 if len(panels) == 2 else 50)
        widths.append(_bucket_label(width))
        edges = np.arange(lo, hi + width, width)
        last_edges.append(float(unit.scale(edges[-1])))
        bottom = np.zeros(len(edges) - 1)
        for label in labels:
            times = np.asarray([t for t, lab in data.responses if lab == label and lo <= t <= hi])
            counts, _ = np.histogram(times, bins=edges)
            total = sum(1 for _, lab in data.responses if lab == label)
            ax.bar(
                unit.scale(edges[:-1]),
                counts,
                width=unit.scale(width),
                bottom=bottom,
                align="edge",
                color=colors[label],
                label=f"{label} (n={total})"
                if label.isdigit()
                else f"no status: {label} (n={total})",
                edgecolor="white",
                lw=0.3,
            )
            bottom += counts
        ax.grid(axis="y", alpha=0.3)
        tallest = max(tallest, float(bottom.max()) if len(bottom) else 0.0)
    if not labels:
        _empty(right[0], "no webhook responses")
    else:
        right[-1].legend(fontsize=8, title="HTTP status", title_fontsize=8, loc="upper right")
    right[0].set_ylim(0, max(tallest, 1.0) * 1.1)
    right[0].yaxis.set_major_locator(MaxNLocator(integer=True))
    right[0].set_ylabel("responses per bucket")
    right[0].set_title(
        f"responses the endpoint gave Stripe ({' / '.join(widths)} buckets)",
        fontsize=10,
        loc="left",
    )
    _label_panels([right], panels, data.clock)
    for ax, edge in zip(right, last_edges, strict=True):  # the last bucket whole, not clipped
        ax.set_xlim(right=max(ax.get_xlim()[1], edge))
    fig.tight_layout()
    return fig


# ---- all of them


CHARTS = {
    "lock_wait_distribution.png": chart_lock_wait_distribution,
    "lock_wait_over_time.png": chart_lock_wait_over_time,
    "operations.png": chart_operations,
    "seats.png": chart_seats,
    "webhooks.png": chart_webhooks,
}


def make_charts(run_dir: Path) -> list[Path]:
    """Write every chart of the run into run_dir/charts/; returns the PNG paths in report order."""
    data = read_run(run_dir)
    out = run_dir / "charts"
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in CHART_FILES:
        fig = CHARTS[name](data)
        if data.name:
            fig.text(0.995, 0.003, data.name, ha="right", va="bottom", fontsize=7, color="0.45")
        path = out / name
        fig.savefig(path, dpi=DPI)
        plt.close(fig)
        paths.append(path)
    return paths
