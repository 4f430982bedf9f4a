"""`paysim stripe serve`: bad options are one line and exit 2; Ctrl-C stops it with exit 130,
one line, and nothing left listening."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

from simulator.cli import main
from tests.blackboxhelpers import listening

UNKNOWN_KEY = Path(__file__).parent / "data" / "scenarios" / "bad" / "unknown_key.toml"


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["--webhook-url", "localhost:3000/webhook"], "--webhook-url"),
        (["--secret", "sk_test_oops"], "--secret"),
        (["--retry-compression", "0.5"], "--retry-compression"),
        (["--port", "70000"], "--port"),
        (["--scenario", str(UNKNOWN_KEY)], "unknown_key.toml"),
    ],
)
def test_bad_options_are_one_line_and_exit_2(args: list[str], names: str) -> None:
    result = CliRunner().invoke(main, ["stripe", "serve", *args])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and names in lines[0] and "error" in lines[0]


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_serves_until_ctrl_c_then_exits_130_and_closes_the_port(stop: signal.Signals) -> None:
    server = subprocess.Popen(
        [sys.executable, "-c", "from simulator.cli import main; main()", "stripe", "serve"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        base_url = server.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(base_url + "/_paysim/health", timeout=10) as response:
            assert json.load(response) == {"ok": True}
        server.send_signal(stop)
        _, stderr = server.communicate(timeout=20)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    assert server.returncode == 130
    assert stderr.strip().splitlines()[-1] == "paysim stripe serve: stopped (Ctrl-C)"
    assert "Traceback" not in stderr
    deadline = time.monotonic() + 5
    while listening(base_url) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not listening(base_url)
