"""Scenario mutation: a neighbour of a scenario, one or a few knobs turned.

What a fuzzer's havoc stage does to bytes, done to the scenario's knobs: set a customer weight, a
timeout, a topology, a fault's probability; add or drop a workload part, a fault, a preloaded
purchase, a program; take a whole section (the faults, the engine config, ...) from another
corpus scenario (a splice); or draw another run seed. Each knob has a short list of values worth
trying (a fuzzer's dictionary): the edges the engine's code compares against (0, a lock timeout
shorter than a Stripe call, a session that expires while the customer thinks) and the defaults.

Every key of the scenario schema is either a knob here or listed in `NOT_EXPLORED` with the
reason (a test keeps the schema and the two tables equal, so a new key is classified, not
forgotten). Children stay small (at most `MAX_USERS` buyers) and valid: each is written as TOML
and read back by the scenario loader, so every corpus file loads, and Redis-locked (wall-clock)
topologies are never produced. All choices come from the `random.Random` handed in, in a fixed
order (no set or dict iteration that depends on string hashing): the same seed, the same children.
"""

from __future__ import annotations

import random
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from simulator.nemesis import FAULT_KINDS, REDIS_KINDS
from simulator.scenario import (
    ATTACKS,
    BALANCERS,
    PRELOAD_STATUSES,
    WEBHOOK_MODES,
    WORKLOAD_KINDS,
    FaultSpec,
    PreloadPurchase,
    ProgramSpec,
    RollingDeploy,
    Scenario,
    WorkloadPart,
)
from simulator.scenario_file import ScenarioError, scenario_from_dict, scenario_to_toml

#: buyers in a child at most (unless its parent had more): runs stay a fraction of a second
MAX_USERS = 64
#: items of each array a child may hold
MAX_ITEMS = {"workload": 5, "faults": 5, "preload": 4, "programs": 3}
#: knob changes stacked into one child, drawn from this list (mostly one or two, as havoc does)
STACKING = (1, 1, 1, 2, 2, 3, 4)
#: tries before a child that keeps coming out invalid falls back to a new run seed alone
TRIES = 12

Values = tuple[Any, ...] | Callable[[Scenario], tuple[Any, ...]]

WEIGHTS = (0.0, 0.5, 1.0, 3.0)
BOOLS = (False, True)
#: fault kinds a virtual-time run can have (Redis faults need a Redis topology: wall-clock)
VIRTUAL_FAULTS = tuple(sorted(FAULT_KINDS - REDIS_KINDS))

#: scalar knobs, by section: dotted path into the scenario -> values worth trying
KNOBS: Mapping[str, Mapping[str, Values]] = {
    "customers": {
        **{
            f"customers.{w}": WEIGHTS
            for w in (
                "pay",
                "decline_then_pay",
                "decline",
                "async_success",
                "async_failure",
                "abandon",
                "cancel",
                "pay_after_cancel",
                "buy_again",
                "buy_again_old_tab",
                "second_tab",
                "cancel_then_old_tab",
                "debit_then_buy_again",
                "pay_then_buy_again",
            )
        },
        "customers.cancel_clicks": (1, 2, 3),
        "customers.think_time_s": (
            (0.0, 0.0),
            (0.5, 2.0),
            (1.0, 30.0),
            (5.0, 120.0),
            (600.0, 1800.0),
        ),
        "customers.redirect": BOOLS,
        "customers.redirect_every_method": BOOLS,
        "customers.late_share": (0.0, 0.2, 1.0),
        "customers.late_think_s": (
            (1200.0, 90000.0),
            (1700.0, 1900.0),
            (3500.0, 3700.0),
            (86000.0, 90000.0),
        ),
        "customers.return_after_s": (
            (1.0, 10.0),
            (60.0, 600.0),
            (1700.0, 1900.0),
            (3600.0, 86400.0),
        ),
        "customers.settle_after_s": (
            (0.0, 0.0),
            (120.0, 120.0),
            (3600.0, 3600.0),
            (86400.0, 432000.0),
        ),
        "customers.pending_page": (0.0, 0.5, 1.0),
        "customers.pending_page_after_s": (
            (0.0, 1.0),
            (60.0, 600.0),
            (3500.0, 3700.0),
            (86400.0, 90000.0),
        ),
    },
    "faults": {"swarm": BOOLS},
    "topology": {
        "topology.instances": (1, 2, 3),
        "topology.balancer": tuple(BALANCERS),
        "topology.locks": ("memory", "shared"),  # never "redis": wall-clock runs
        "topology.rolling_deploy": (
            None,
            RollingDeploy(),
            RollingDeploy(at=5.0, overlap_s=0.0),
            RollingDeploy(at=10.0, overlap_s=600.0),
        ),
    },
    "durations": {
        "durations.workload_s": (30.0, 60.0, 150.0, 300.0),
        "durations.liveness_s": (0.0, 3600.0, 86400.0, 345600.0),
        "durations.reconcile_every_s": (10.0, 60.0, 300.0, 3600.0),
    },
    "webhooks": {
        "webhooks.mode": tuple(WEBHOOK_MODES),
        "webhooks.delivery_timeout_s": (0.5, 5.0, 30.0),
    },
    "stripe": {
        "stripe_latency_s": (0.0, 0.15, 2.0, 12.0, 40.0),
        "stripe_max_network_retries": (None, 0, 1, 2, 5),
    },
    "engine_config": {
        "engine_config.purchase_lock_timeout": (0.0, 0.5, 2.0, 10.0, 60.0),
        "engine_config.webhook_lock_timeout": (0.0, 0.5, 5.0, 15.0),
        "engine_config.stripe_timeout": (0.0, 0.5, 2.0, 10.0, 30.0),
        "engine_config.stripe_retries": (0, 1, 2, 4),
        "engine_config.webhook_tolerance": (5.0, 300.0, 86400.0),  # 0: every signature is stale
        "engine_config.session_ttl": (1800.0, 1900.0, 3600.0, 86400.0),
        "engine_config.reconcile_grace": (0.0, 60.0, 300.0, 900.0, 86400.0),
        "engine_config.reconcile_stripe_timeout": (0.5, 10.0, 80.0),
    },
    "adversary": {
        "adversary.enabled": BOOLS,
        "adversary.attacks": (5, 20, 40),
        "adversary.start": (0.0, 2.0, 30.0),
        "adversary.attackers": (1, 2, 3),
        **{f"adversary.weights.{family}": (0.0, 1.0, 3.0) for family in ATTACKS},
    },
}


def _program_ids(scenario: Scenario) -> tuple[str, ...]:
    return tuple(p.id for p in scenario.programs)


def _targets(scenario: Scenario) -> tuple[str, ...]:
    return (*scenario.topology.instance_names(), "any")


#: knobs of each item of an array of tables: field -> values worth trying
ITEM_KNOBS: Mapping[str, Mapping[str, Values]] = {
    "workload": {
        "kind": tuple(WORKLOAD_KINDS),
        "program": _program_ids,
        "count": (1, 2, 3, 5, 8, 13),
        "at": (0.0, 1.0, 5.0, 30.0, 120.0),
        "clicks": (2, 3, 5),
        "click_gap_s": (0.0, 0.5, 3.0),
        "rate_per_s": (0.2, 1.0, 5.0),
        "duration_s": (10.0, 60.0, 200.0),
        "class_rep": BOOLS,
    },
    "faults": {
        "kind": VIRTUAL_FAULTS,
        "start": (0.0, 5.0, 30.0),
        "end": (30.0, 120.0, float("inf")),
        "probability": (0.1, 0.5, 1.0),
        "value_s": (0.5, 1.0, 12.0, 40.0, 400.0),
        "rate": (1.0, 5.0, 25.0),
        "target": _targets,
    },
    "preload": {
        # u0_0 and u0_1 are the first buyers of the first workload part: a legacy purchase of a
        # user who is buying again now
        "user_id": ("legacy_user", "legacy_1", "u0_0", "u0_1"),
        "program": _program_ids,
        "class_rep": BOOLS,
        "customer_at": (1.0, 30.0, 60.0, 2000.0, 4000.0),
        "status": tuple(PRELOAD_STATUSES),
    },
    "programs": {
        "class_rep_limit": (0, 1, 2, 3, 5, 10),
        # Stripe's least (USD) and greatest charge: a 1-cent price would make the adversary's
        # "tampered to 1 cent" body the genuine one
        "price_cents": (50, 5000, 99_999_999),
        "withdrawn": BOOLS,  # a link to a program no longer on sale
    },
}
ITEM_TYPES: Mapping[str, type] = {
    "workload": WorkloadPart,
    "faults": FaultSpec,
    "preload": PreloadPurchase,
    "programs": ProgramSpec,
}

#: scenario keys the search leaves as they are, and why (with KNOBS and ITEM_KNOBS: the schema)
NOT_EXPLORED: Mapping[str, str] = {
    "name": "a label",
    "description": "a label",
    "seeds": "the run seed is a knob of its own (a child may draw another)",
    "expect": "judging only: the search judges the invariants alone",
    "expect_fail": "judging only",
    "thresholds": "judging only: lock-wait SLOs change no engine branch",
    "blackbox": "black-box mode only",
    "topology.redis_url": "Redis locks run in wall-clock time: not explored",
    "topology.lease_s": "Redis locks run in wall-clock time: not explored",
    "engine_config.currency": "handed to Stripe unread by the engine's branches",
    "engine_config.success_url": "handed to Stripe unread by the engine's branches",
    "engine_config.cancel_url": "handed to Stripe unread by the engine's branches",
    "programs[].id": "named by the add and remove operations (prog_1, prog_2, ...)",
}

#: how often each kind of change is drawn (a section of knobs, an array's operations, a splice,
#: a new run seed)
SECTION_WEIGHTS: Mapping[str, float] = {
    "customers": 3.0,
    "workload": 3.0,
    "faults": 3.0,
    "preload": 1.5,
    "programs": 1.0,
    "topology": 1.5,
    "durations": 0.5,
    "webhooks": 1.0,
    "stripe": 1.0,
    "engine_config": 2.0,
    "adversary": 1.5,
    "splice": 1.0,
    "seed": 2.0,
}
#: what a splice takes from a donor (programs and workload together: parts name programs)
SPLICE_SECTIONS: tuple[tuple[str, ...], ...] = (
    ("customers",),
    ("faults", "swarm"),
    ("topology",),
    ("durations",),
    ("webhooks",),
    ("engine_config",),
    ("adversary",),
    ("preload",),
    ("programs", "workload", "preload"),
    ("stripe_latency_s", "stripe_max_network_retries"),
)


@dataclass(frozen=True)
class Child:
    """A mutated scenario, its run seed, and what was changed (for the corpus manifest)."""

    scenario: Scenario
    seed: int
    changes: tuple[str, ...]


def explorable(scenario: Scenario) -> bool:
    """A scenario the search may run and save: virtual time, and it survives the trip through
    a scenario file unchanged (so the corpus file replays exactly what ran)."""
    if scenario.topology.locks == "redis" or any(f.kind in REDIS_KINDS for f in scenario.faults):
        return False
    try:
        back = scenario_from_dict(tomllib.loads(scenario_to_toml(scenario)), "<mutant>")
    except ScenarioError:
        return False
    return back == scenario


def users(scenario: Scenario) -> int:
    return sum(part.count for part in scenario.workload)


class Mutator:
    """Children of corpus scenarios, every choice drawn from `rng`."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def child(self, parent: Scenario, seed: int, donors: Sequence[Scenario] = ()) -> Child:
        """One to four stacked changes; a valid child, else the parent under a new run seed."""
        for _ in range(TRIES):
            scenario, run_seed, changes = parent, seed, []
            for _ in range(self.rng.choice(STACKING)):
                changed = self._change(scenario, run_seed, donors)
                if changed is None:
                    continue
                scenario, run_seed, what = changed
                changes.append(what)
            scenario = _fix_faults(scenario)
            if not changes or (scenario == parent and run_seed == seed):
                continue
            if users(scenario) > max(MAX_USERS, users(parent)) or not explorable(scenario):
                continue
            return Child(scenario, run_seed, tuple(changes))
        run_seed = self._new_seed(seed)
        return Child(parent, run_seed, (f"seed = {run_seed}",))

    # ---- one change

    def _change(
        self, scenario: Scenario, seed: int, donors: Sequence[Scenario]
    ) -> tuple[Scenario, int, str] | None:
        sections = list(SECTION_WEIGHTS)
        section = self.rng.choices(sections, weights=[SECTION_WEIGHTS[s] for s in sections])[0]
        if section == "seed":
            new = self._new_seed(seed)
            return scenario, new, f"seed = {new}"
        if section == "splice":
            changed = self._splice(scenario, donors)
        elif section == "faults" and self.rng.random() < 0.1:
            changed = self._knob(scenario, "faults")  # swarm on or off
        elif section in ITEM_KNOBS:
            changed = self._array(scenario, section)
        else:
            changed = self._knob(scenario, section)
        if changed is None:
            return None
        return changed[0], seed, changed[1]

    def _new_seed(self, seed: int) -> int:
        new = seed
        while new == seed:
            new = self.rng.randrange(1, 2**16)
        return new

    def _knob(self, scenario: Scenario, section: str) -> tuple[Scenario, str] | None:
        paths = list(KNOBS[section])
        path = self.rng.choice(paths)
        current = _get(scenario, path)
        options = [v for v in _values(KNOBS[section][path], scenario) if v != current]
        if not options:
            return None
        value = self.rng.choice(options)
        return _set(scenario, path, value), f"{path} = {_show(value)}"

    def _array(self, scenario: Scenario, name: str) -> tuple[Scenario, str] | None:
        items = list(getattr(scenario, name))
        ops = ["change"] if items else []
        if len(items) < MAX_ITEMS[name]:
            ops.append("add")
        if len(items) > (0 if name in ("faults", "preload") else 1):
            ops.append("remove")
        if not ops:
            return None
        op = self.rng.choice(ops)
        if op == "add":
            item = self._new_item(scenario, name, len(items))
            items.append(item)
            label = f"{name} += {_describe_item(item)}"
        elif op == "remove":
            n = self.rng.randrange(len(items))
            gone = items.pop(n)
            if name == "programs" and _referenced(scenario, gone.id):
                return None
            label = f"{name} -= [{n}] {_describe_item(gone)}"
        else:
            n = self.rng.randrange(len(items))
            knobs = ITEM_KNOBS[name]
            key = self.rng.choice(list(knobs))
            current = getattr(items[n], key)
            options = [v for v in _values(knobs[key], scenario) if v != current]
            if not options:
                return None
            value = self.rng.choice(options)
            items[n] = replace(items[n], **{key: value})
            label = f"{name}[{n}].{key} = {_show(value)}"
        return replace(scenario, **{name: tuple(items)}), label

    def _new_item(self, scenario: Scenario, name: str, index: int) -> Any:
        fields = {
            key: self.rng.choice(_values(values, scenario))
            for key, values in ITEM_KNOBS[name].items()
        }
        if name == "programs":
            taken = set(_program_ids(scenario))
            fields["id"] = next(
                f"prog_{n}" for n in range(index + 1, index + 10) if f"prog_{n}" not in taken
            )
        return ITEM_TYPES[name](**fields)

    def _splice(
        self, scenario: Scenario, donors: Sequence[Scenario]
    ) -> tuple[Scenario, str] | None:
        others = [d for d in donors if d != scenario]
        if not others:
            return None
        donor_index = self.rng.randrange(len(others))
        donor = others[donor_index]
        keys = self.rng.choice(SPLICE_SECTIONS)
        spliced = replace(scenario, **{k: getattr(donor, k) for k in keys})
        if spliced == scenario:
            return None
        return spliced, f"{' + '.join(keys)} from {donor.name}"


# ---- paths into the scenario


def _get(obj: Any, path: str) -> Any:
    for key in path.split("."):
        obj = getattr(obj, key)
    return obj


def _set(obj: Any, path: str, value: Any) -> Any:
    head, _, rest = path.partition(".")
    if not rest:
        return replace(obj, **{head: value})
    return replace(obj, **{head: _set(getattr(obj, head), rest, value)})


def _values(values: Values, scenario: Scenario) -> tuple[Any, ...]:
    return values(scenario) if callable(values) else values


def _referenced(scenario: Scenario, program_id: str) -> bool:
    return any(p.program == program_id for p in (*scenario.workload, *scenario.preload))


def _fix_faults(scenario: Scenario) -> Scenario:
    """A setting a fault's kind does not read goes back to its default (a scenario file may
    not set it); faults aimed at an instance the topology no longer has aim at i0 instead."""
    targets = _targets(scenario)
    faults = tuple(f.without_unread() for f in scenario.faults)
    faults = tuple(f if f.target in targets else replace(f, target="i0") for f in faults)
    return scenario if faults == scenario.faults else replace(scenario, faults=faults)


def _show(value: Any) -> str:
    if isinstance(value, RollingDeploy):
        return f"rolling deploy at {value.at:g} s, overlap {value.overlap_s:g} s"
    if value is None:
        return "unset"
    if isinstance(value, tuple):
        return "[" + ", ".join(f"{v:g}" for v in value) + "]"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value).lower() if isinstance(value, bool) else str(value)


def _describe_item(item: Any) -> str:
    if isinstance(item, WorkloadPart):
        return f"{item.kind} of {item.count} at {item.at:g} s"
    if isinstance(item, FaultSpec):
        return f"{item.kind} p={item.probability:g}"
    if isinstance(item, PreloadPurchase):
        return f"{item.status} purchase of {item.user_id}"
    if isinstance(item, ProgramSpec):
        return f"{item.id} (limit {item.class_rep_limit})"
    return type(item).__name__
