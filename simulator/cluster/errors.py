"""The one error `--cluster` raises: a one-line message, shown as bad input (exit 2)."""

from __future__ import annotations


class ClusterError(Exception):
    """A cluster that cannot be used: unreachable, no workers, or workers that cannot run the
    engine. The message is one line and names `--cluster` or `--engine`."""
