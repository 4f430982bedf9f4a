"""`make demo`: run the CI suite against `reference` and `seed`, write reports/demo/."""

from __future__ import annotations

import sys
from pathlib import Path

from simulator.run import simulate
from simulator.scenario import Durations, FaultSpec, ProgramSpec, Scenario, WorkloadPart

DEMO = Scenario(
    name="demo-herd-and-duplicates",
    programs=(ProgramSpec(class_rep_limit=3),),
    workload=(
        WorkloadPart(kind="herd", count=10, at=1.0),
        WorkloadPart(kind="double_click", count=3, clicks=3, at=5.0),
    ),
    faults=(FaultSpec(kind="webhook_duplicates", probability=0.5),),
    durations=Durations(workload_s=300),
)


def main(out: Path) -> None:
    for engine in ("reference", "seed"):
        result = simulate(DEMO, 1, engine, out / engine)
        print(
            f"{engine:10} quiescent={result.quiescent} history={result.history_lines} lines "
            f"sha256={result.history_sha256[:12]} counts={result.counts}"
        )
    print(f"histories in {out}/")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "reports/demo"))
