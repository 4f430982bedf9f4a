"""A service in another language: examples/node-checkout (Express + the official stripe npm
package) under paysim's black-box scenarios. The naive variant is caught, the careful passes.

Needs node and the example's node_modules (`make test` runs `npm ci` for it); without them the
test skips, unless PAYSIM_REQUIRE_NODE=1 (CI) makes that a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from simulator.blackbox.driver import Target
from simulator.blackbox.runs import run_blackbox_case
from simulator.scenario_file import load_scenario
from tests.blackbox_sockets import listening_ports

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "examples" / "node-checkout"
SUITE = ROOT / "scenarios" / "blackbox"
#: the hazards the two variants differ on: check-then-act on create, cancel without expiry
SCENARIOS = ("double-click", "pay-after-cancel")


def _node_ready() -> str | None:
    if shutil.which("node") is None:
        return "node is not installed"
    if not (APP / "node_modules" / "stripe").is_dir():
        return "examples/node-checkout/node_modules missing (run `make test` or `npm ci` there)"
    return None


missing = _node_ready()
if missing and os.environ.get("PAYSIM_REQUIRE_NODE") == "1":
    raise RuntimeError(f"PAYSIM_REQUIRE_NODE=1 but {missing}")
pytestmark = pytest.mark.skipif(missing is not None, reason=missing or "")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def node_service(variant: str, stripe_port: int, sink_port: int) -> Iterator[str]:
    """The example app on a free port, pointed at paysim's fake Stripe and sink; stopped after
    (this process's own child, ended by its pid)."""
    env = {
        **os.environ,
        "PORT": "0",
        "VARIANT": variant,
        "STRIPE_API_BASE": f"http://127.0.0.1:{stripe_port}",
        "SINK_URL": f"http://127.0.0.1:{sink_port}",
    }
    process = subprocess.Popen(
        ["node", "server.js"], cwd=APP, env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), f"node-checkout did not start: {url!r}"
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.mark.parametrize("variant", ["naive", "careful"])
def test_node_checkout_naive_is_caught_careful_passes(variant: str, tmp_path: Path) -> None:
    before = listening_ports()
    stripe_port, sink_port = _free_port(), _free_port()
    verdicts = {}
    with node_service(variant, stripe_port, sink_port) as url:
        target = Target(url=url, stripe_port=stripe_port, sink_port=sink_port)
        for name in SCENARIOS:
            scenario = load_scenario(SUITE / f"{name}.toml")
            result = run_blackbox_case(
                scenario, scenario.seeds[0], target, tmp_path / name, report=False
            )
            verdicts[name] = result.summary
    violated = {
        name: {v["invariant"] for v in s["violations"]} for name, s in verdicts.items()
    }
    if variant == "careful":
        for name, summary in verdicts.items():
            assert summary["verdict"] == "pass", (name, summary["violations"], summary["vacuous"])
            assert summary["counts"]["fulfilments"] > 0
    else:
        # check-then-act on create and on webhooks: a user's clicks each make a purchase, a
        # duplicate delivery completes twice
        assert violated["double-click"] & {"single_pending_per_user", "no_double_completion"}
        # a cancel that leaves the session payable: seats past the limit, a drifting counter
        assert violated["pay-after-cancel"] & {"no_limit_bypass", "counter_consistent"}
        # it trusts every webhook: forged ones are accepted
        assert all("signature_enforced" in v for v in violated.values()), violated
    assert listening_ports() == before
