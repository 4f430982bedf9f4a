"""serve_asgi: a free port, a real HTTP server, and nothing left listening however the block ends."""

from __future__ import annotations

import socket
import time

import httpx
import pytest
import trio

from simulator.blackbox.serving import GRACEFUL_S, drop_connection, run_asgi, serve_asgi


async def hello(scope, receive, send):  # type: ignore[no-untyped-def]
    if scope["path"] == "/drop":
        assert await drop_connection(send)
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"hello " + scope["path"].encode()})


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def test_serves_on_a_free_port_and_closes_it() -> None:
    async def main() -> int:
        async with serve_asgi(hello) as url:
            assert url.startswith("http://127.0.0.1:") and port_of(url) > 0
            async with httpx.AsyncClient() as client:
                response = await client.get(url + "/a")
            assert (response.status_code, response.text) == (200, "hello /a")
            assert listening(port_of(url))
            return port_of(url)

    port = trio.run(main)
    assert not listening(port)


def test_closes_on_error_and_on_cancel() -> None:
    ports: list[int] = []

    async def failing() -> None:
        async with serve_asgi(hello) as url:
            ports.append(port_of(url))
            raise RuntimeError("the block failed")

    with pytest.raises(RuntimeError, match="the block failed"):
        trio.run(failing)

    async def cancelled() -> None:
        with trio.move_on_after(0.2):
            async with serve_asgi(hello) as url:
                ports.append(port_of(url))
                async with httpx.AsyncClient() as client:  # an idle keep-alive connection
                    await client.get(url + "/x")
                    await trio.sleep_forever()

    started = time.monotonic()
    trio.run(cancelled)
    assert time.monotonic() - started < 0.2 + GRACEFUL_S + 1.0  # an idle client holds no stop up
    assert len(ports) == 2 and not any(listening(p) for p in ports)


def test_nursery_start_api() -> None:
    async def main() -> tuple[int, bool]:
        async with trio.open_nursery() as nursery:
            url = await nursery.start(run_asgi, hello)
            async with httpx.AsyncClient() as client:
                ok = (await client.get(url + "/b")).text == "hello /b"
            nursery.cancel_scope.cancel()
        return port_of(url), ok

    port, ok = trio.run(main)
    assert ok and not listening(port)


def test_drop_connection_sends_no_response_at_all() -> None:
    """A reset, not a 500: the client gets no status line (stripe-python then retries)."""

    async def main() -> None:
        async with serve_asgi(hello) as url, httpx.AsyncClient() as client:
            with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
                await client.get(url + "/drop")
            assert (await client.get(url + "/after")).text == "hello /after"

    trio.run(main)
