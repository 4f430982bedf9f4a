"""`--cluster ADDRESS`: a running scheduler (`tcp://host:port`) or `local:N` to try it here."""

from __future__ import annotations

import re
from dataclasses import dataclass

from simulator.cluster.errors import ClusterError

#: a local cluster is for trying `--cluster` out on one machine, not for running a farm
MAX_LOCAL_WORKERS = 64
_LOCAL = re.compile(r"local:(\d{1,3})")
_SCHEDULER = re.compile(r"(tcp|tls)://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):(\d{1,5})")


@dataclass(frozen=True)
class ClusterAddress:
    """Either a scheduler to connect to or a number of local worker processes to start."""

    text: str
    scheduler: str | None = None  # tcp://host:port of a running scheduler
    host: str = ""
    port: int = 0
    local_workers: int = 0  # local:N

    @property
    def is_local(self) -> bool:
        return self.local_workers > 0


def parse_address(text: str) -> ClusterAddress:
    """The address, validated; raises `ClusterError` naming `--cluster` otherwise."""
    text = text.strip()
    local = _LOCAL.fullmatch(text)
    if local:
        workers = int(local.group(1))
        if not 1 <= workers <= MAX_LOCAL_WORKERS:
            raise ClusterError(
                f"--cluster {text}: local:N wants 1 to {MAX_LOCAL_WORKERS} worker processes"
            )
        return ClusterAddress(text, local_workers=workers)
    remote = _SCHEDULER.fullmatch(text)
    if remote and 0 < int(remote.group(3)) < 65536:
        return ClusterAddress(
            text, scheduler=text, host=remote.group(2).strip("[]"), port=int(remote.group(3))
        )
    raise ClusterError(
        f"--cluster {text!r}: expected tcp://HOST:PORT of a running Dask scheduler "
        "(or tls://HOST:PORT), or local:N to start N local worker processes"
    )
