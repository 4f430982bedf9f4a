"""The lock port: `async with locks.hold(key, wait_timeout=...) as lease`.

A lease carries a fencing token that grows with every grant of its key, whichever backend runs,
so an engine can fence its writes (docs/seed-design.md).
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol


class LockTimeout(Exception):
    """Waiting for `key` exceeded `timeout` seconds. The holder, if any, keeps running."""

    def __init__(self, key: str, timeout: float) -> None:
        super().__init__(f"Lock timeout after {timeout * 1000:.0f}ms for key: {key}")
        self.key = key
        self.timeout = timeout


class LockUnavailable(Exception):
    """The lock service cannot be reached; treat like a timeout (busy), nothing was granted."""


@dataclass(frozen=True)
class Lease:
    key: str
    token: int  # fencing token: strictly increasing per key across grants


class LockService(Protocol):
    def hold(self, key: str, *, wait_timeout: float) -> AbstractAsyncContextManager[Lease]: ...


def key_family(key: str) -> str:
    """The key up to its first variable part: `purchase:create:u1:p1` -> `purchase:create`.

    A part is variable when it contains a digit or is the third part or later.
    """
    parts = key.split(":")
    fixed: list[str] = []
    for part in parts[:2]:
        if any(ch.isdigit() for ch in part) or not part:
            break
        fixed.append(part)
    return ":".join(fixed) if fixed else parts[0]
