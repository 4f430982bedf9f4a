"""Serve an ASGI app over real HTTP on Hypercorn, under trio, and always stop it.

Public API:

    async with serve_asgi(app, port=0) as base_url:   # "http://127.0.0.1:PORT"
        ...                                           # the server runs here
    # closed: on success, an exception, cancellation or Ctrl-C alike, nothing is left listening

    base_url = await nursery.start(run_asgi, app)      # the same as a task; stops with the nursery

    await drop_connection(send)                        # inside an ASGI app: close the client's
                                                       # connection without a response

Why Hypercorn: a well-kept ASGI server that runs on trio, which the harness already runs on, so
an HTTP server shares one event loop (and one clock) with the fakes and the driver.
Port 0 asks the OS for a free port; the URL carries the one it gave.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import trio
from hypercorn.config import Config
from hypercorn.protocol.events import StreamClosed
from hypercorn.protocol.http_stream import HTTPStream
from hypercorn.trio import serve

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
AsgiApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: seconds open connections get to finish when the server stops
GRACEFUL_S = 1.0


def _config(host: str, port: int, graceful_s: float) -> Config:
    config = Config()
    config.bind = [f"{host}:{port}"]
    config.graceful_timeout = graceful_s
    config.accesslog = None
    config.loglevel = "WARNING"  # no "Running on ..." banner: callers print their own URL
    logging.getLogger("hypercorn.error").setLevel(logging.WARNING)
    return config


async def run_asgi(
    app: AsgiApp,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    graceful_s: float = GRACEFUL_S,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve `app` until cancelled; `task_status.started(base_url)` once it listens."""
    config = _config(host, port, graceful_s)
    stop = trio.Event()
    try:
        async with trio.open_nursery() as nursery:
            binds = await nursery.start(_serve, app, config, stop.wait)
            task_status.started(binds[0])
            await trio.sleep_forever()
    finally:
        stop.set()


async def _serve(
    app: AsgiApp,
    config: Config,
    shutdown: Callable[[], Awaitable[None]],
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    await serve(
        _with_lifespan(app),  # type: ignore[arg-type]
        config,
        shutdown_trigger=shutdown,
        task_status=task_status,
        mode="asgi",
    )


def _with_lifespan(app: AsgiApp) -> AsgiApp:
    """`app` for HTTP; the lifespan protocol answered here, so apps need not know it."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await app(scope, receive, send)
            return
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    return wrapped


@asynccontextmanager
async def serve_asgi(
    app: AsgiApp, *, host: str = "127.0.0.1", port: int = 0, graceful_s: float = GRACEFUL_S
) -> AsyncIterator[str]:
    """The base URL (no trailing slash) of `app` served on `host:port` while the block runs.
    An exception from the block comes out as itself, not wrapped in an exception group."""
    with single_error():
        async with trio.open_nursery() as nursery:
            base_url = await nursery.start(_run_until, app, host, port, graceful_s)
            try:
                yield base_url
            finally:
                nursery.cancel_scope.cancel()


@contextmanager
def single_error() -> Iterator[None]:
    """Re-raise a nursery's exception group of ONE exception as that exception, so callers of
    a context manager that hides a nursery catch what their block raised (Ctrl-C included)."""
    try:
        yield
    except BaseExceptionGroup as group:
        inner: BaseException = group
        while isinstance(inner, BaseExceptionGroup) and len(inner.exceptions) == 1:
            inner = inner.exceptions[0]
        if inner is group:
            raise
        raise inner from None


async def _run_until(
    app: AsgiApp,
    host: str,
    port: int,
    graceful_s: float,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    await run_asgi(app, host=host, port=port, graceful_s=graceful_s, task_status=task_status)


async def drop_connection(send: Send) -> bool:
    """Close the client's connection with no response at all, as a reset socket would.

    ASGI has no word for it (an app that sends nothing gets a 500 from the server), so this
    reaches Hypercorn's HTTP/1.1 stream behind `send`: marked closed, the stream sends no 500,
    and the connection closes. Returns False, doing nothing, under another server; the caller
    then answers in some other way. Tested in tests/test_blackbox_serving.py (the pinned
    Hypercorn range keeps it true)."""
    stream = getattr(send, "__self__", None)
    if not isinstance(stream, HTTPStream):
        return False
    stream.closed = True
    await stream.send(StreamClosed(stream_id=stream.stream_id))
    return True
