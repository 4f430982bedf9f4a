"""Which TCP ports this test process listens on, from /proc (Linux): a black-box run must leave
none behind. Only this process's sockets count, so other processes on the machine cannot
disturb the comparison."""

from __future__ import annotations

import os
from pathlib import Path


def listening_ports() -> set[int]:
    """Ports of TCP sockets in LISTEN state owned by this process."""
    inodes = set()
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            local, state, inode = parts[1], parts[3], parts[9]
            if state == "0A" and inode in inodes:  # 0A: TCP_LISTEN
                ports.add(int(local.rsplit(":", 1)[1], 16))
    return ports
