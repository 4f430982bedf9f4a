"""The guided search loop: run examples, keep those that reach new engine code, mutate them.

AFL's and libFuzzer's loop over scenarios. The queue starts with the starting inputs (a
scenario's seeds, a suite's scenarios, or scenarios drawn from `explore.scenarios()`) and an
earlier corpus, replayed; every further example is a child of a queue entry (`mutation.Mutator`),
or, without a starting scenario, now and then a fresh draw. An example that reaches a branch or
line that neither the baseline nor any earlier example reached is written to the corpus and
joins the queue; the first example to violate each invariant is kept as that invariant's failure.

Deterministic for the same options: every choice comes from one `random.Random` seeded by the
search seed, and examples go out in batches of `BATCH` children drawn from the state the previous
batch left, their results read in the order they were drawn. So the number of worker processes
(or a cluster) changes only how fast it goes, never what is found; a time budget stops the search
between two batches, so what it found is what the same search with an example budget finds up to
that batch.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simulator.explore import sample_scenarios
from simulator.guided.corpus import CorpusFile, CorpusWriter
from simulator.guided.job import GuidedJob, GuidedRun, run_guided_job
from simulator.guided.mutation import Mutator
from simulator.guided.points import EngineShape, Points, points_of
from simulator.scenario import Scenario

#: children drawn from one state of the queue, then run (in parallel) and read in order
BATCH = 8
#: fresh scenarios drawn from `explore.scenarios()` at a time (no starting scenario given)
FRESH_CHUNK = 64
#: of the children, this share is a fresh draw instead (no starting scenario given)
FRESH_SHARE = 0.1
#: of the parents, this share is drawn among the entries that added coverage (if any)
FAVOURED_SHARE = 0.75


@dataclass(frozen=True)
class Start:
    """A starting input: a scenario, a run seed, and what it is (for people)."""

    scenario: Scenario
    seed: int
    label: str


@dataclass
class Example:
    """One run of the search."""

    number: int  # 1, 2, ... (0: a corpus file replayed before the search)
    scenario: Scenario
    seed: int
    origin: str
    summary: dict[str, Any]
    new: Points = field(default_factory=Points)
    #: every point the run reached (computed only when it had an arc the search had not seen)
    points: Points | None = None
    corpus_file: str | None = None
    error: str | None = None  # paysim's own traceback (`job.GuidedRun.error`)

    @property
    def violated(self) -> list[str]:
        statuses = self.summary.get("invariants") or {}
        return sorted(k for k, v in statuses.items() if v == "violated")


@dataclass
class _Entry:
    """A queue entry: a scenario mutations start from."""

    scenario: Scenario
    seed: int
    label: str
    gain: int  # points it added when it ran (0: a starting input that added none)


@dataclass
class GuidedOutcome:
    examples: int
    replayed: int
    elapsed_s: float
    stopped_by: str  # "examples" or "time"
    baseline: Points
    reached: Points  # by this search (replayed corpus included), and by a bare import
    kept: list[Example]  # new corpus files, in the order found
    failures: dict[str, Example]  # invariant -> first example that violated it
    errors: list[Example]  # examples paysim itself raised on, one per distinct error
    arcs: dict[str, set[tuple[int, int]]]  # module -> every raw arc reached (coverage.json)

    @property
    def beyond(self) -> Points:
        return self.reached - self.baseline


@dataclass(frozen=True)
class GuidedOptions:
    engine: str
    seed: int = 1
    max_examples: int = 200
    time_budget_s: float | None = None


class GuidedSearch:
    """One search; `run()` once. `pool` has `sweep.LocalPool.submit`'s shape (or a cluster's)."""

    def __init__(
        self,
        options: GuidedOptions,
        shape: EngineShape,
        baseline: Points,
        starts: Sequence[Start],
        corpus: CorpusWriter,
        existing: Sequence[CorpusFile],
        pool: Any,
        *,
        generate: bool = False,
        on_example: Callable[[Example, GuidedSearch], None] | None = None,
    ) -> None:
        self.options, self.shape, self.pool = options, shape, pool
        self.baseline = baseline | shape.at_import
        self.seen = self.baseline
        self.reached = shape.at_import
        self.starts, self.corpus, self.existing = list(starts), corpus, list(existing)
        self.generate, self.on_example = generate, on_example
        self.rng = random.Random(f"paysim-guided:{options.seed}")
        self.mutator = Mutator(self.rng)
        self.queue: list[_Entry] = []
        self.arcs: dict[str, set[tuple[int, int]]] = {}
        self.kept: list[Example] = []
        self.failures: dict[str, Example] = {}
        self.errors: list[Example] = []
        self.examples = 0
        self.replayed = 0
        self._fresh: list[tuple[Scenario, int]] = []
        self._fresh_chunks = 0

    # ---- the loop

    def run(self) -> GuidedOutcome:
        started = time.monotonic()
        budget = self.options.time_budget_s
        stopped_by = "examples"
        replays = [
            (f.scenario, seed, f"corpus {f.name}", f.name)
            for f in self.existing
            for seed in f.seeds
        ]
        for chunk in _chunks(replays, BATCH):
            self._run_batch([(s, seed, label) for s, seed, label, _ in chunk], replay=chunk)
        starts = [(s.scenario, s.seed, s.label) for s in self.starts]
        if self.generate and not starts:
            starts = [self._fresh_draw() for _ in range(2 * BATCH)]
        starts = starts[: self.options.max_examples]

        def out_of_time() -> bool:  # the first batch always runs: a budget is never empty
            return budget is not None and self.examples > 0 and time.monotonic() - started >= budget

        for chunk in _chunks(starts, BATCH):
            if out_of_time():
                stopped_by = "time"
                break
            self._run_batch(chunk)
        while stopped_by == "examples" and self.examples < self.options.max_examples:
            if not self.queue and not self.generate:
                break  # nothing to mutate (every start was cut by the budget)
            if out_of_time():
                stopped_by = "time"
                break
            size = min(BATCH, self.options.max_examples - self.examples)
            self._run_batch([self._child() for _ in range(size)])
        return GuidedOutcome(
            examples=self.examples,
            replayed=self.replayed,
            elapsed_s=time.monotonic() - started,
            stopped_by=stopped_by,
            baseline=self.baseline,
            reached=self.reached,
            kept=self.kept,
            failures=self.failures,
            errors=self.errors,
            arcs=self.arcs,
        )

    def _run_batch(
        self,
        cases: Sequence[tuple[Scenario, int, str]],
        replay: Sequence[tuple[Scenario, int, str, str]] | None = None,
    ) -> None:
        futures: list[Future[GuidedRun]] = [
            self.pool.submit(run_guided_job, GuidedJob(s, seed, self.options.engine))
            for s, seed, _ in cases
        ]
        kept = len(self.kept)
        for n, ((scenario, seed, origin), future) in enumerate(zip(cases, futures, strict=True)):
            run = future.result()
            if replay is not None:
                self.replayed += 1
                number = 0
            else:
                self.examples += 1
                number = self.examples
            example = Example(number, scenario, seed, origin, run.summary, error=run.error)
            known = {error_line(e.error or "") for e in self.errors}
            if run.error is not None and error_line(run.error) not in known:
                self.errors.append(example)
            example.points = self._absorb(run)
            example.new = example.points - self.seen if example.points is not None else Points()
            if example.points is not None:
                self.seen |= example.points
                self.reached |= example.points
            for invariant in example.violated:
                self.failures.setdefault(invariant, example)
            if replay is not None:
                name = replay[n][3]
                example.corpus_file = name
                self.queue.append(_Entry(scenario, seed, name, _size(example.new)))
            elif example.new:
                example.corpus_file = self.corpus.add(example, self.shape)
                self.kept.append(example)
                self.queue.append(_Entry(scenario, seed, example.corpus_file, _size(example.new)))
            elif number and origin.startswith("start"):
                self.queue.append(_Entry(scenario, seed, origin.removeprefix("start: "), 0))
            if self.on_example:
                self.on_example(example, self)
        if len(self.kept) > kept:  # an interrupted search keeps what it found, described
            self.corpus.write_manifest()

    def _absorb(self, run: GuidedRun) -> Points | None:
        """Fold a run's arcs into the search's; its points, or None when the search had seen
        every arc it had already: such a run cannot reach a new point (not worth reporting on)."""
        novel = False
        for module, arcs in run.arcs.items():
            known = self.arcs.setdefault(module, set())
            if not arcs <= known:
                novel = True
                known |= arcs
        return points_of(run.arcs, self.shape) if novel else None

    # ---- what runs next

    def _child(self) -> tuple[Scenario, int, str]:
        if self.generate and (not self.queue or self.rng.random() < FRESH_SHARE):
            return self._fresh_draw()
        parent = self._parent()
        donors = [e.scenario for e in self.queue]
        child = self.mutator.child(parent.scenario, parent.seed, donors)
        return child.scenario, child.seed, f"{parent.label} + {'; '.join(child.changes)}"

    def _parent(self) -> _Entry:
        favoured = [e for e in self.queue if e.gain]
        if favoured and self.rng.random() < FAVOURED_SHARE:
            return self.rng.choice(favoured)
        return self.rng.choice(self.queue)

    def _fresh_draw(self) -> tuple[Scenario, int, str]:
        if not self._fresh:
            self._fresh_chunks += 1
            chunk_seed = self.rng.randrange(2**32)
            self._fresh = sample_scenarios(FRESH_CHUNK, chunk_seed)
        scenario, seed = self._fresh.pop(0)
        return (
            scenario,
            seed,
            f"start: generated #{self._fresh_chunks}.{FRESH_CHUNK - len(self._fresh)}",
        )

    # ---- figures while it runs

    def branches_reached(self) -> int:
        return len((self.seen).branches)


def error_line(trace: str) -> str:
    """The last line of a traceback: the exception and its message."""
    lines = [line for line in trace.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def _size(points: Points) -> int:
    return len(points.branches) + len(points.lines)


def _chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[n : n + size] for n in range(0, len(items), size)]


def default_out(engine: str) -> Path:
    from simulator.suite import slug

    return Path("reports/explore/guided") / slug(engine)
