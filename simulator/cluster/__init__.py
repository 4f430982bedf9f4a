"""Sweeps on a Dask cluster (`--cluster`): the same jobs as the local process pool, elsewhere.

`address` parses `--cluster`, `session` connects to a scheduler (or starts a local cluster) and
always stops what it started, `probe` proves every worker can build the engine before any job
runs, `remote` is what a worker runs (the local job functions, with run folders sent back as
bytes), `pool` submits jobs, streams results back as they finish and reports the jobs a lost
worker forced the scheduler to run again.

Dask's `distributed` is imported only here and only when `--cluster` is given: it is the
optional extra `paysim[cluster]`.
"""

from simulator.cluster.errors import ClusterError

__all__ = ["ClusterError"]
