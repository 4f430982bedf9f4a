"""A real Redis for tests: `REDIS_URL`, else a private `redis-server`, else skip (or fail).

Import the fixtures into a test module with
`from tests.redishelpers import redis_server, redis_url  # noqa: F401`.

`PAYSIM_REQUIRE_REDIS=1` turns a skip into a failure, so CI cannot pass by silently skipping.
Tests share one server per session: each uses its own namespace (`unique_namespace`). Only the
"Redis loses its keys" tests wipe data: a private server is restarted (no persistence, so every
key is gone, connections drop); with `REDIS_URL` they get a dedicated db index
(`REDIS_TEST_DB`, default 15) and `FLUSHDB` it, leaving the other databases alone.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn, TypeVar
from urllib.parse import urlsplit, urlunsplit

import anyio
import pytest
import redis
import redis.exceptions

T = TypeVar("T")

_STARTUP_S = 10.0


def unique_namespace() -> str:
    """A key prefix no other test (or earlier run) uses."""
    return f"paysim:test:{uuid.uuid4().hex[:12]}:"


def run_asyncio(fn: Callable[[], Awaitable[T]]) -> T:
    """Run `fn` on anyio's asyncio backend: `redis.asyncio` does not run under trio."""
    return anyio.run(fn, backend="asyncio")


def closed_port_url() -> str:
    """A URL on which nothing listens (the port was free a moment ago)."""
    return f"redis://127.0.0.1:{_free_port()}/0"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_until_up(url: str, deadline_s: float) -> None:
    client = redis.Redis.from_url(url, socket_connect_timeout=0.2, socket_timeout=0.5)
    try:
        end = time.monotonic() + deadline_s
        while True:
            try:
                client.ping()
                return
            except redis.exceptions.ConnectionError:
                if time.monotonic() > end:
                    raise
                time.sleep(0.02)
    finally:
        client.close()


@dataclass
class RedisTestServer:
    """The server the tests use; `owned` when this session started it."""

    url: str
    owned: bool
    _port: int = 0
    _dir: Path | None = None
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def db_url(self, db: int) -> str:
        return urlunsplit(urlsplit(self.url)._replace(path=f"/{db}"))

    def lose_keys(self, namespace: str) -> None:
        """Redis loses the test's keys: a restart when the server is ours; on a server the test
        was only given (REDIS_URL), the keys under `namespace` in the database REDIS_URL names,
        and nothing else (never FLUSHDB a database the test was not given)."""
        if self.owned:
            self.stop()
            self.start()
            return
        client = redis.Redis.from_url(self.url)
        try:
            for key in client.scan_iter(match=f"{namespace}*"):
                client.delete(key)
        finally:
            client.close()

    # -- a private server ---------------------------------------------------------------------

    @classmethod
    def spawn(cls) -> RedisTestServer:
        port = _free_port()
        server = cls(url=f"redis://127.0.0.1:{port}/0", owned=True, _port=port)
        server._dir = Path(tempfile.mkdtemp(prefix="paysim-redis-"))
        try:
            server.start()
        except BaseException:
            server.close()
            raise
        return server

    def start(self) -> None:
        assert self._dir is not None
        cmd = ["redis-server", "--port", str(self._port), "--bind", "127.0.0.1"]
        cmd += ["--save", "", "--appendonly", "no", "--dir", str(self._dir)]
        log = open(self._dir / "redis.log", "ab")  # noqa: SIM115 (the child keeps it)
        self._proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        try:
            _wait_until_up(self.url, _STARTUP_S)
        except redis.exceptions.ConnectionError:
            self.stop()
            raise

    def stop(self) -> None:
        if self._proc is None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._proc = None

    def close(self) -> None:
        self.stop()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get("PAYSIM_REQUIRE_REDIS") == "1":
        pytest.fail(f"PAYSIM_REQUIRE_REDIS=1 but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisTestServer]:
    url = os.environ.get("REDIS_URL")
    if url:
        try:
            _wait_until_up(url, 2.0)
        except redis.exceptions.ConnectionError as exc:
            _unavailable(f"REDIS_URL={url} is not reachable: {exc}")
        yield RedisTestServer(url=url, owned=False)
        return
    if shutil.which("redis-server") is None:
        _unavailable("no Redis: REDIS_URL is unset and redis-server is not on PATH")
    try:
        server = RedisTestServer.spawn()
    except (OSError, redis.exceptions.ConnectionError) as exc:
        _unavailable(f"could not start redis-server: {exc}")
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def redis_url(redis_server: RedisTestServer) -> str:
    """URL of a live Redis for this test session (see the module docstring)."""
    return redis_server.url
