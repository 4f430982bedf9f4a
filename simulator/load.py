"""`paysim load`: a load test described by a few numbers instead of a scenario file.

N purchases at concurrency C: C buyers arrive at once (a herd, the worst instant for the locks
and the seat counter), each clicking Buy `clicks` times (an impatient double-click: the only way
two requests want the same purchase lock), and the other N − C arrive steadily at C per second. K instances share the
store; locks are per instance in memory (the seed's design) or in Redis. The lock-wait SLOs are
the seed document's own (mean wait < 50 ms, timeouts < 0.1 %): missed → exit code 3.

In virtual time (the default) a run is deterministic and as fast as the CPU allows; with
`--wall-clock` every sleep and latency is real, as against a real Redis.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from reference_impl.ports import EngineConfig
from simulator.scenario import (
    CustomerMix,
    Durations,
    ProgramSpec,
    Scenario,
    Topology,
    WorkloadPart,
)
from simulator.topology import redis_url_for

LOAD_SESSION_TTL_S = 3600.0


@dataclass(frozen=True)
class LoadSpec:
    purchases: int = 200
    concurrency: int = 20
    instances: int = 2
    locks: str = "memory"
    redis_url: str | None = None
    wall_clock: bool = False
    class_rep_limit: int | None = None  # None: half the purchases
    clicks: int = 2

    @property
    def herd(self) -> int:
        return min(self.concurrency, self.purchases)

    @property
    def requests(self) -> int:
        """Purchase requests in all: the herd's clicks plus the steady arrivals."""
        return self.herd * self.clicks + self.purchases - self.herd

    @property
    def limit(self) -> int:
        return self.class_rep_limit if self.class_rep_limit is not None else self.purchases // 2


def load_scenario_for(spec: LoadSpec) -> Scenario:
    """The scenario a load test runs; stored in its run folder like any other."""
    rest = spec.purchases - spec.herd
    wall = spec.wall_clock
    start = 0.1 if wall else 1.0
    herd = (
        WorkloadPart(kind="double_click", count=spec.herd, clicks=spec.clicks, at=start)
        if spec.clicks > 1
        else WorkloadPart(kind="herd", count=spec.herd, at=start)
    )
    workload = [herd]
    if rest:
        # Poisson arrivals at C/s, stopped at `rest`: a window half again as long as they need
        window = 1.5 * rest / spec.concurrency + 3.0
        workload.append(
            WorkloadPart(
                kind="steady",
                count=rest,
                at=start,
                rate_per_s=float(spec.concurrency),
                duration_s=window,
            )
        )
        arrivals_end = start + window
    else:
        arrivals_end = start
    # customers pay, cancel or retry a declined card: no session is left open to expire (30 min
    # at least), so a wall-clock run settles in seconds once the workload is over
    think = (0.05, 0.5) if wall else (1.0, 10.0)
    customers = CustomerMix(
        pay=0.85,
        decline_then_pay=0.05,
        decline=0.0,
        async_success=0.0,
        async_failure=0.0,
        abandon=0.0,
        cancel=0.1,
        pay_after_cancel=0.0,
        think_time_s=think,
    )
    workload_s = arrivals_end + think[1] + (5.0 if wall else 60.0)
    durations = (
        Durations(workload_s=workload_s, liveness_s=60.0, reconcile_every_s=1.0)
        if wall
        else Durations(workload_s=workload_s)
    )
    # an hour, not Stripe's 30-minute minimum: the engine computes expires_at before the create
    # request travels (latency, retries), and at exactly 30 min Stripe refuses the late ones
    config = EngineConfig(session_ttl=LOAD_SESSION_TTL_S, reconcile_grace=2.0 if wall else 900.0)
    return Scenario(
        name=f"load-{spec.purchases}x{spec.concurrency}-{spec.instances}i-{spec.locks}",
        description=(
            f"paysim load: {spec.purchases} purchases, {spec.herd} at once then "
            f"{spec.concurrency}/s, {spec.instances} instances, {spec.locks} locks"
        ),
        programs=(ProgramSpec(class_rep_limit=spec.limit),),
        workload=tuple(workload),
        customers=customers,
        topology=Topology(
            instances=spec.instances,
            locks=spec.locks,
            redis_url=redis_url_for(spec.redis_url) if spec.locks == "redis" else None,
        ),
        durations=durations,
        engine_config=config,
    )


def check_redis(url: str) -> None:
    """Raise `ConnectionError` (one line) unless a Redis answers PING at `url`."""
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=2.0, socket_timeout=2.0)
        client.ping()
    except (redis.RedisError, ValueError, OSError) as exc:
        raise ConnectionError(f"cannot reach Redis at {url}: {' '.join(str(exc).split())}") from exc


class CreateProgress:
    """Counts finished purchase requests in a growing history.jsonl, for a progress bar.

    The run writes its history from the simulation; this thread reads it as it grows and
    reports each finished create (ok, fail or unknown) through `advance`.
    """

    def __init__(self, history: Path, advance: Callable[[int], None], every_s: float = 0.2) -> None:
        self.history, self.advance, self.every_s = history, advance, every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> CreateProgress:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _poll(self) -> None:
        offset, partial = 0, ""
        while not self._stop.wait(self.every_s):
            try:
                with self.history.open(encoding="utf-8") as fh:
                    fh.seek(offset)
                    chunk = fh.read()
                    offset = fh.tell()
            except OSError:
                continue
            lines = (partial + chunk).split("\n")
            partial = lines.pop()
            done = sum(1 for line in lines if _finished_create(line))
            if done:
                self.advance(done)


def _finished_create(line: str) -> bool:
    if '"op.' not in line or '"create"' not in line:
        return False
    try:
        entry = json.loads(line)
    except ValueError:
        return False
    return entry.get("type") in ("op.ok", "op.fail", "op.info") and entry.get("op") == "create"
