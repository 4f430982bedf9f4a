"""Lock-wait SLOs: the seed document's own targets (mean wait < 50 ms, timeouts < 0.1 %) by default."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from reference_impl.lock_stats import FamilySnapshot
from simulator.scenario import Thresholds


def check_thresholds(limits: Thresholds, families: dict[str, FamilySnapshot]) -> dict[str, Any]:
    misses: list[str] = []
    for family, snap in families.items():
        attempts = snap.count + snap.timeouts
        checks = [
            ("mean wait", snap.mean, limits.mean_wait_ms, "ms"),
            ("p95 wait", snap.p95, limits.p95_wait_ms, "ms"),
            ("p99 wait", snap.p99, limits.p99_wait_ms, "ms"),
            ("max wait", snap.max, limits.max_wait_ms, "ms"),
        ]
        for label, measured, limit, unit in checks:
            if limit is not None and measured > limit:
                misses.append(f"{family}: {label} {measured:.1f}{unit} > {limit:g}{unit}")
        ratio = snap.timeouts / attempts if attempts else 0.0
        if ratio > limits.timeout_ratio:
            misses.append(
                f"{family}: lock timeouts {ratio:.2%} of {attempts} acquisitions > {limits.timeout_ratio:.2%}"
            )
    return {"met": not misses, "misses": misses, "limits": asdict(limits)}
