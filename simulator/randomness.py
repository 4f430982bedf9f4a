"""Named random streams derived from one run seed.

Each concern (workload, stripe, faults, webhooks, scheduling, ...) draws from its own stream, so
adding draws to one (a new fault kind) does not reshuffle the others (the workload).
"""

from __future__ import annotations

import hashlib
import random


class RandomStreams:
    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._streams: dict[str, random.Random] = {}

    def stream(self, name: str) -> random.Random:
        rng = self._streams.get(name)
        if rng is None:
            digest = hashlib.sha256(f"{self.seed}:{name}".encode()).digest()
            rng = random.Random(int.from_bytes(digest[:8], "big"))
            self._streams[name] = rng
        return rng
