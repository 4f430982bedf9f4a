"""Automatic expiry of open Checkout Sessions at `expires_at`: one sweeper task over a heap.

A task per session would cost a sleeping task per purchase; the sweeper sleeps until the earliest
deadline instead, and runs only while some scheduled session is still open, so a finished run
does not keep a task alive (or push virtual time 24 h forward) for sessions already paid.
"""

from __future__ import annotations

import heapq

import anyio
import anyio.abc

from simulator.clock import SimClock
from simulator.fake_stripe.objects import CheckoutSession
from simulator.fake_stripe.state import StripeState

#: float slack when comparing the virtual clock with integer deadlines
_EPSILON_S = 1e-3
#: the heap is compacted once it holds this many more closed sessions' entries than open ones
_COMPACT_SLACK = 64


class ExpirySweeper:
    def __init__(
        self, state: StripeState, clock: SimClock, task_group: anyio.abc.TaskGroup
    ) -> None:
        self._state = state
        self._clock = clock
        self._task_group = task_group
        self._heap: list[tuple[int, int, str]] = []
        self._open: set[str] = set()
        self._seq = 0
        self._running = False
        self._stopped = False
        self._wake = anyio.Event()
        self._scope: anyio.CancelScope | None = None

    def schedule(self, session: CheckoutSession) -> None:
        if self._stopped:
            return
        self._seq += 1
        entry = (session.expires_at, self._seq, session.id)
        heapq.heappush(self._heap, entry)
        self._open.add(session.id)
        if not self._running:
            self._running = True
            self._task_group.start_soon(self._run)
        elif self._heap[0] == entry:
            self._wake.set()

    def discard(self, session_id: str) -> None:
        """The session left `open` some other way; stop as soon as none is left to expire."""
        self._open.discard(session_id)
        if not self._open and self._heap:
            self._heap.clear()
            self._wake.set()
        elif len(self._heap) > 2 * len(self._open) + _COMPACT_SLACK:
            self._compact()

    def _compact(self) -> None:
        """Drop closed sessions' entries, but the top one: the sweeper may be asleep until its
        deadline, and `schedule` compares new entries with it, so keeping it keeps every wake-up
        as it was (the sweeper pops closed entries anyway when it gets to them)."""
        top, *rest = self._heap
        self._heap = [top, *(e for e in rest if e[2] in self._open)]
        heapq.heapify(self._heap)  # `top` is the least entry, so it stays first

    def stop(self) -> None:
        self._stopped = True
        if self._scope is not None:
            self._scope.cancel()

    async def _run(self) -> None:
        with anyio.CancelScope() as self._scope:
            try:
                await self._sweep()
            finally:
                self._running = False
                self._scope = None

    async def _sweep(self) -> None:
        while True:
            while self._heap and self._heap[0][2] not in self._open:
                heapq.heappop(self._heap)
            if not self._heap:
                return
            delay = self._heap[0][0] - self._clock.now()
            if delay > _EPSILON_S:
                self._wake = anyio.Event()
                with anyio.move_on_after(delay):
                    await self._wake.wait()
                continue
            _, _, session_id = heapq.heappop(self._heap)
            self._open.discard(session_id)
            session = self._state.sessions[session_id]
            if session.status == "open":
                self._state.expire_session(session, reason="expires_at")
