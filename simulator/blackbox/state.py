"""The service's state for the checkers: read from a JSON state route or from its MongoDB.

Simulation records every store write as it happens; a black-box run cannot see inside, so it
reads the state every `poll_every_s` and records each purchase or program that changed as an
observed `store.write` (the same history entry the checkers read in simulation). The checkers
that speak of "every instant" then judge every state paysim saw: a state that lived shorter
than a poll may be missed, never invented. The last read is the run's final state.

A state is `{"programs": [...], "purchases": [...]}` in paysim's schema (DESIGN.md): programs
`{_id, class_rep_limit, class_rep_count}`, purchases `{_id, user_id, program_id, class_rep,
status, stripe_session_id}`. Anything else is refused with a one-line reason.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Protocol

import httpx
import trio

from simulator.blackbox.settings import StateMapping

#: largest state paysim reads (a black-box run has at most a few thousand purchases)
MAX_STATE_BYTES = 32 * 1024 * 1024
#: fields the history keeps of each document (as simulator/store_observer.py does)
TRACKED = {
    "purchases": ("status", "user_id", "program_id", "class_rep", "stripe_session_id"),
    "programs": ("class_rep_count", "class_rep_limit"),
}

State = dict[str, list[dict[str, Any]]]


class BadState(Exception):
    """The service's state could not be read or is not in paysim's schema."""


class StateSource(Protocol):
    async def read(self) -> State: ...

    async def aclose(self) -> None: ...


def validated(data: Any, where: str) -> State:
    """`data` as a State, or BadState naming what is wrong."""
    if not isinstance(data, dict):
        raise BadState(f"{where}: expected an object with programs and purchases")
    out: State = {}
    for coll in TRACKED:
        docs = data.get(coll)
        if not isinstance(docs, list):
            raise BadState(f"{where}: {coll}: expected a list")
        for n, doc in enumerate(docs):
            if not isinstance(doc, dict) or not isinstance(doc.get("_id"), str | int):
                raise BadState(f"{where}: {coll}[{n}]: expected an object with an _id")
        out[coll] = docs
    for n, program in enumerate(out["programs"]):
        for key in TRACKED["programs"]:
            value = program.get(key, 0)
            if not isinstance(value, int) or isinstance(value, bool):
                raise BadState(f"{where}: programs[{n}].{key}: expected an integer")
    return out


class JsonStateRoute:
    """GET `url`: the service's own state route."""

    def __init__(self, url: str, client: httpx.AsyncClient) -> None:
        self.url = url
        self.client = client

    async def read(self) -> State:
        try:
            async with self.client.stream("GET", self.url, timeout=10.0) as response:
                body = b""
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_STATE_BYTES:
                        raise BadState(f"{self.url}: state larger than {MAX_STATE_BYTES} bytes")
        except httpx.HTTPError as exc:
            raise BadState(f"{self.url}: {type(exc).__name__}: {exc}") from None
        if response.status_code != 200:
            raise BadState(f"{self.url}: HTTP {response.status_code}")
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise BadState(f"{self.url}: not JSON") from None
        return validated(data, self.url)

    async def aclose(self) -> None:
        return None


class MongoState:
    """The service's MongoDB, mapped onto paysim's schema by `mapping` (pymongo, in a thread)."""

    def __init__(self, uri: str, mapping: StateMapping) -> None:
        import pymongo

        self.uri = uri
        self.mapping = mapping
        self._client: Any = pymongo.MongoClient(uri, serverSelectionTimeoutMS=5000)
        try:
            self._db = self._client.get_default_database()
        except Exception:  # pymongo's ConfigurationError: the URI names no database
            self._client.close()
            raise BadState(f"{uri}: the URI names no database (mongodb://host/DB)") from None

    async def read(self) -> State:
        try:
            return await trio.to_thread.run_sync(self._read)
        except BadState:
            raise
        except Exception as exc:  # pymongo's errors: the service's database is unreachable
            raise BadState(f"{self.uri}: {type(exc).__name__}: {exc}") from None

    def _read(self) -> State:
        m = self.mapping
        programs = [
            {
                "_id": _plain(d.get(m.id)),
                "class_rep_limit": d.get(m.class_rep_limit, 0),
                "class_rep_count": d.get(m.class_rep_count, 0),
            }
            for d in self._db[m.programs].find({})
        ]
        purchases = [
            {
                "_id": _plain(d.get(m.id)),
                "user_id": _plain(d.get(m.user_id)),
                "program_id": _plain(d.get(m.program_id)),
                "class_rep": bool(d.get(m.class_rep)),
                "status": d.get(m.status),
                "stripe_session_id": d.get(m.stripe_session_id),
            }
            for d in self._db[m.purchases].find({})
        ]
        return validated({"programs": programs, "purchases": purchases}, self.uri)

    async def aclose(self) -> None:
        self._client.close()


def _plain(value: Any) -> Any:
    """An ObjectId (or any id type) as the string the checkers compare."""
    return value if isinstance(value, str | int) or value is None else str(value)


class StatePoller:
    """Reads the state every `every_s`, records what changed, and keeps the last state read."""

    def __init__(self, source: StateSource, record: Callable[..., Any], *, every_s: float) -> None:
        self.source = source
        self.record = record
        self.every_s = every_s
        self.last: State | None = None
        self.changed_at = 0.0  # trio time of the last change seen
        self.errors = 0
        self._seen: dict[tuple[str, Any], dict[str, Any]] = {}

    async def run(self) -> None:
        while True:
            await self.poll_once()
            await trio.sleep(self.every_s)

    async def poll_once(self) -> bool:
        """Read once; False (recorded as `state.error`, the first of a streak) if it failed."""
        try:
            state = await self.source.read()
        except BadState as exc:
            self.errors += 1
            if self.errors == 1:
                self.record("state.error", error=str(exc))
            return False
        self.errors = 0
        self._observe(state)
        self.last = state
        return True

    def _observe(self, state: State) -> None:
        present: set[tuple[str, Any]] = set()
        for coll, fields in TRACKED.items():
            for doc in sorted(state[coll], key=lambda d: str(d["_id"])):
                key = (coll, doc["_id"])
                present.add(key)
                seen = {f: doc.get(f) for f in fields}
                if self._seen.get(key) != seen:
                    self._seen[key] = seen
                    self.changed_at = trio.current_time()
                    self.record(
                        "store.write",
                        coll=coll,
                        op="observed",
                        id=doc["_id"],
                        doc=seen,
                        instance="target",
                        req=None,
                    )
        for key in [k for k in self._seen if k not in present]:
            del self._seen[key]
            self.changed_at = trio.current_time()
            self.record(
                "store.write",
                coll=key[0],
                op="observed_gone",
                id=key[1],
                doc={},
                instance="target",
                req=None,
            )

    def final_state(self) -> State:
        """The last state read, each collection sorted by id (empty if none was ever read)."""
        state = self.last or {"programs": [], "purchases": []}
        return {c: sorted(state[c], key=lambda d: str(d["_id"])) for c in TRACKED}
