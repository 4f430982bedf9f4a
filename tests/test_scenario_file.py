"""Scenario files: every broken file gets one line naming the file and key; good files round-trip."""

from __future__ import annotations

import dataclasses
import random
import tomllib
from pathlib import Path
from types import SimpleNamespace

import pytest

from reference_impl.ports import EngineConfig
from simulator.checkers.evidence import EVIDENCE_KINDS as CHECKED_EVIDENCE_KINDS
from simulator.demo import DEMO
from simulator.fake_stripe.idempotency import KEY_TTL_S
from simulator.nemesis import FAULT_KINDS as NEMESIS_FAULT_KINDS
from simulator.nemesis import Nemesis
from simulator.run import simulate
from simulator.scenario import (
    EVIDENCE_KINDS,
    EXTERNAL_METADATA,
    FAULT_KINDS,
    FAULT_OPTIONAL,
    FAULT_SETTINGS,
    IDEMPOTENCY_WINDOW_S,
    Durations,
    FaultSpec,
    ProgramSpec,
    RollingDeploy,
    Scenario,
    Thresholds,
    Topology,
    WorkloadPart,
)
from simulator.scenario_docs import render_readme
from simulator.scenario_file import (
    ScenarioError,
    load_scenario,
    scenario_from_dict,
    scenario_to_toml,
)

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
BAD = DATA / "bad_scenarios"

#: broken file → (the dotted key the message names, a phrase that says what was expected)
BROKEN: dict[str, tuple[str, str]] = {
    "unknown_top_key.toml": ("sward", "unknown key (did you mean 'swarm'?)"),
    "unknown_nested_key.toml": ("topology.lockz", "did you mean 'locks'?"),
    "unknown_rolling_deploy_key.toml": ("topology.rolling_deploy.overlap", "unknown key"),
    "wrong_type_instances.toml": (
        "topology.instances",
        'expected an integer between 1 and 64, got "two"',
    ),
    "probability_out_of_range.toml": (
        "faults[1].probability",
        "expected a number between 0 and 1, got 1.5",
    ),
    "negative_count.toml": ("workload[0].count", "got -5"),
    "bad_lock_mode.toml": ("topology.locks", 'expected one of "memory", "shared", "redis"'),
    "bad_fault_kind.toml": ("faults[0].kind", 'got "stripe_timeout"'),
    "wrong_type_in_array.toml": ("programs[1].class_rep_limit", "expected an integer"),
    "missing_fault_kind.toml": ("faults[0].kind", "required"),
    "bool_as_int.toml": ("stripe_max_network_retries", "got true"),
    "table_not_array.toml": ("programs", "expected an array of tables, got a table"),
    "think_time_reversed.toml": ("customers.think_time_s", "ascending order"),
    "think_time_length.toml": ("customers.think_time_s", "a list of 2 numbers"),
    "unknown_program.toml": ("workload[0].program", 'got "pilates"'),
    "fault_ends_before_start.toml": ("faults[0].end", "at or after start"),
    "bad_expect.toml": ("expect[1]", 'got "dragons"'),
    "nan_duration.toml": ("durations.workload_s", "finite"),
    "session_ttl_too_long.toml": ("engine_config.session_ttl", "between 1800 and 86400"),
    "unknown_fault_target.toml": ("faults[0].target", 'got "i5"'),
    "unread_fault_setting.toml": (
        "faults[0].probability",
        "stripe_outage does not read probability: it reads start, end (for some calls failing",
    ),
    "duplicate_preload.toml": ("preload[1].user_id", "at most one per user and program"),
    "preload_past_the_limit.toml": ("preload[2].class_rep", "whose class_rep_limit is 1"),
}


def _error(path: Path) -> str:
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_file_names_file_and_key(name: str) -> None:
    key, phrase = BROKEN[name]
    message = _error(BAD / name)
    assert message.startswith(f"{BAD / name}: {key}: "), message
    assert phrase in message, message


def test_every_broken_file_is_listed() -> None:
    on_disk = {p.name for p in BAD.glob("*.toml")} - {"malformed.toml"}
    assert on_disk == set(BROKEN)
    assert len(on_disk) >= 12


def test_malformed_toml_names_file_and_line() -> None:
    message = _error(BAD / "malformed.toml")
    assert message.startswith(f"{BAD / 'malformed.toml'}: invalid TOML: ")
    assert "line 2" in message


def test_missing_file() -> None:
    missing = BAD / "does_not_exist.toml"
    assert _error(missing) == f"{missing}: no such scenario file"


def test_error_carries_its_parts() -> None:
    with pytest.raises(ScenarioError) as info:
        scenario_from_dict({"topology": {"instances": 0}}, "x.toml")
    assert (info.value.source, info.value.key) == ("x.toml", "topology.instances")


def test_good_file_loads_and_round_trips() -> None:
    scenario = load_scenario(DATA / "good_scenarios" / "everything.toml")
    assert scenario.programs[0] == ProgramSpec(id="yoga", class_rep_limit=2, price_cents=9900)
    assert scenario.topology.rolling_deploy == RollingDeploy(at=45.0)
    assert scenario.faults[1].end == float("inf")
    assert scenario.customers.think_time_s == (1.0, 30.5)
    # keys not given keep the scenario's defaults, not the engine's (session_ttl is 3600 there)
    assert scenario.engine_config.webhook_lock_timeout == 15.0
    text = scenario_to_toml(scenario)
    assert scenario_from_dict(tomllib.loads(text)) == scenario


@pytest.mark.parametrize(
    "scenario",
    [
        Scenario(),
        DEMO,
        Scenario(workload=(), programs=(ProgramSpec(id="p"),)),
        Scenario(
            name='quotes "and" \\ backslashes\nnewline',
            programs=(ProgramSpec(id="p"),),
            workload=(WorkloadPart(program="p", kind="herd"),),
            faults=(FaultSpec(kind="pause", start=1, end=2), FaultSpec(kind="crash")),
            topology=Topology(instances=3, redis_url="redis://x", rolling_deploy=RollingDeploy()),
            thresholds=Thresholds(p99_wait_ms=12.5),
            engine_config=dataclasses.replace(Scenario().engine_config, currency="eur"),
            seeds=(7, 8),
            expect=("crash", "lock_wait"),
        ),
    ],
)
def test_round_trip(scenario: Scenario) -> None:
    text = scenario_to_toml(scenario)
    assert scenario_from_dict(tomllib.loads(text)) == scenario


def test_default_scenario_writes_only_its_name() -> None:
    assert scenario_to_toml(Scenario()) == 'name = "scenario"\n'


def test_loaded_scenario_runs(tmp_path: Path) -> None:
    path = tmp_path / "tiny.toml"
    path.write_text(
        'name = "tiny"\n[[workload]]\nkind = "herd"\ncount = 3\n'
        "[durations]\nworkload_s = 30.0\nliveness_s = 3600.0\n",
        encoding="utf-8",
    )
    result = simulate(load_scenario(path), 1, "reference", tmp_path / "run")
    assert result.scenario == "tiny"
    assert (tmp_path / "run" / "history.jsonl").exists()


def test_fault_kinds_match_the_nemesis() -> None:
    assert set(FAULT_KINDS) == set(NEMESIS_FAULT_KINDS)


def test_each_fault_kind_says_which_settings_it_reads() -> None:
    """Every kind has its settings listed, and its description names (in backticks) each
    setting it reads and none that it does not."""
    assert set(FAULT_SETTINGS) == set(FAULT_KINDS)
    for kind, reads in FAULT_SETTINGS.items():
        assert set(reads) <= set(FAULT_OPTIONAL), kind
        named = {n for n in FAULT_OPTIONAL if f"`{n}`" in FAULT_KINDS[kind]}
        assert named == set(reads), kind


def _everything_set(kind: str) -> FaultSpec:
    return FaultSpec(kind=kind, probability=0.25, value_s=7.0, rate=3.0, target="any")


@pytest.mark.parametrize("kind", sorted(FAULT_SETTINGS))
def test_a_fault_keeps_only_the_settings_its_kind_reads(kind: str) -> None:
    spec = _everything_set(kind)
    kept = spec.without_unread()
    assert kept.problems() == []
    for name in FAULT_OPTIONAL:
        default = getattr(FaultSpec(kind=kind), name)
        expected = getattr(spec, name) if name in FAULT_SETTINGS[kind] else default
        assert getattr(kept, name) == expected, name
    if set(FAULT_SETTINGS[kind]) != set(FAULT_OPTIONAL):
        assert spec.problems(), kind  # the unread settings are refused


def _projected(*specs: FaultSpec) -> tuple[dict[str, object], dict[str, object]]:
    """What the nemesis sets on the fake Stripe's faults and the delivery policy with `specs`
    switched on, in that order."""
    stripe_faults, policy = SimpleNamespace(), SimpleNamespace()
    nemesis = Nemesis(
        specs, random.Random(0), lambda *a, **k: None, stripe_faults, policy, None, None
    )  # type: ignore[arg-type]
    for spec in specs:
        nemesis._start(spec)
    return vars(stripe_faults), vars(policy)


@pytest.mark.parametrize(
    "kind", sorted(set(FAULT_SETTINGS) - {"pause", "redis_restart", "redis_latency"})
)
def test_an_unread_setting_changes_nothing_the_nemesis_sets(kind: str) -> None:
    """What the nemesis projects onto the fakes is the same with every unread setting at its
    default: refusing them loses nothing a run could have used."""
    spec = _everything_set(kind)
    assert _projected(spec) == _projected(spec.without_unread())


def test_overlapping_faults_without_a_probability_take_the_strongest_setting() -> None:
    """Two rate limits at once: the tighter holds; two reorder jitters: the wider. In either
    order (they were told apart by a `probability` neither reads)."""
    loose, tight = (FaultSpec(kind="stripe_rate_limit", rate=r) for r in (50.0, 2.0))
    narrow, wide = (FaultSpec(kind="webhook_reorder", value_s=v) for v in (1.0, 30.0))
    for order in ((loose, tight, narrow, wide), (tight, loose, wide, narrow)):
        stripe_faults, policy = _projected(*order)
        assert stripe_faults["rate_limit_per_s"] == 2.0
        assert policy["reorder_jitter_s"] == 30.0


def test_evidence_kinds_match_the_checker() -> None:
    assert set(EVIDENCE_KINDS) == set(CHECKED_EVIDENCE_KINDS)


def test_every_field_is_documented() -> None:
    readme = render_readme()
    for cls in (Scenario, ProgramSpec, WorkloadPart, FaultSpec, Topology, Thresholds):
        for f in dataclasses.fields(cls):
            assert f.metadata.get("help"), f"{cls.__name__}.{f.name} has no help"
            assert f"| `{f.name}` |" in readme


def test_engine_config_is_documented_here() -> None:
    """EngineConfig lives in reference_impl; a new field there needs its help in scenario.py."""
    documented = EXTERNAL_METADATA[EngineConfig]
    for f in dataclasses.fields(EngineConfig):
        assert documented.get(f.name, {}).get("help"), (
            f"add EngineConfig.{f.name} to EXTERNAL_METADATA"
        )


def test_committed_readme_matches_the_schema() -> None:
    committed = (ROOT / "scenarios" / "README.md").read_text(encoding="utf-8")
    assert committed == render_readme(), (
        "scenarios/README.md is stale: python -m simulator.scenario_docs > scenarios/README.md"
    )


def test_a_pause_freezing_the_whole_fleet_past_stripes_idempotency_window_is_refused() -> None:
    """explore --guided, shrunk-no_orphan_session: the one instance paused from 5 s to the end
    of a 260,000 s workload. A create whose answer was lost before it could be resolved only by
    replaying it within Stripe's 24 h; the sweep ran at last after three days, Stripe answered
    the replay as a new request, and the session was left to nobody. No engine's doing."""
    every = Durations(workload_s=260_000.0, reconcile_every_s=3600.0)
    frozen = Scenario(faults=(FaultSpec(kind="pause", start=5.0),), durations=every)
    [(key, message)] = frozen.problems()
    assert key == "faults[0].end" and "every instance is paused from 5 to 260000 s" in message
    # shorter than the window less one sweep interval: fine
    short = dataclasses.replace(frozen, faults=(FaultSpec(kind="pause", start=5.0, end=80_000.0),))
    assert short.problems() == []
    # another instance still serves and sweeps, or the pauses take turns: fine
    two = dataclasses.replace(frozen, topology=Topology(instances=2))
    assert two.problems() == []
    turns = dataclasses.replace(
        two,
        faults=(
            FaultSpec(kind="pause", start=5.0, end=100_000.0, target="i0"),
            FaultSpec(kind="pause", start=90_000.0, target="i1"),
        ),
    )
    assert turns.problems() == []
    both = dataclasses.replace(
        turns, faults=(*turns.faults, FaultSpec(kind="pause", start=95_000.0, target="i0"))
    )
    assert both.problems()[0][0] == "faults[0].end"  # both frozen from 95,000 s on
    assert IDEMPOTENCY_WINDOW_S == KEY_TTL_S


def test_a_stripe_slower_than_every_timeout_the_engine_has_is_refused() -> None:
    """explore --guided on the reference, example 158 (shrunk-no_orphan_session, 2026-12-07):
    a 12 s round trip for every request and `reconcile_stripe_timeout = 10`. The create's
    answer was lost, and every replay the sweep made timed out 2 s before Stripe's answer,
    for the whole run: a seat held and a session no purchase names for ever. No engine that
    keeps to its timeouts could do better."""
    slow = Scenario(
        stripe_latency_s=12.0,
        engine_config=EngineConfig(stripe_timeout=0.5, reconcile_stripe_timeout=10.0),
    )
    [(key, message)] = slow.problems()
    assert key == "stripe_latency_s"
    assert "at least engine_config.reconcile_stripe_timeout (10 s)" in message
    # the sweep outwaits it (stripe-slower-than-timeouts: 12 s against the default 80 s)
    patient = dataclasses.replace(slow, engine_config=EngineConfig(stripe_timeout=0.5))
    assert patient.problems() == []
    # an engine that waits for Stripe longest in requests is judged by that timeout
    eager = dataclasses.replace(
        slow, engine_config=EngineConfig(stripe_timeout=12.0, reconcile_stripe_timeout=1.0)
    )
    assert "at least engine_config.stripe_timeout (12 s)" in eager.problems()[0][1]
    assert dataclasses.replace(slow, stripe_latency_s=9.9).problems() == []


def test_a_stripe_outage_past_its_idempotency_window_is_refused() -> None:
    """explore --guided on the reference, example 773 (shrunk-no_orphan_session, 2026-12-07):
    a create's answer lost at 1 s, then Stripe down from 5 s to the end of a 260,000 s workload.
    Every replay failed; the first after the outage, three days on, met a key Stripe had
    forgotten, and the session it had made was left to nobody. No engine's doing."""
    every = Durations(workload_s=260_000.0, reconcile_every_s=3600.0)
    down = Scenario(
        faults=(
            FaultSpec(kind="stripe_lost_response", end=30.0, probability=0.5),
            FaultSpec(kind="stripe_outage", start=5.0),
        ),
        durations=every,
    )
    [(key, message)] = down.problems()
    assert key == "faults[1].end" and "Stripe is down from 5 to 260000 s" in message
    short = dataclasses.replace(
        down, faults=(*down.faults[:1], FaultSpec(kind="stripe_outage", start=5.0, end=80_000.0))
    )
    assert short.problems() == []
    # outages back to back are one outage
    chained = dataclasses.replace(
        short, faults=(*short.faults, FaultSpec(kind="stripe_outage", start=70_000.0))
    )
    assert chained.problems()[0][0] == "faults[1].end"
