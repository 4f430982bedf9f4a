"""Hypothesis profiles: `ci` by default (minutes), `nightly` for soak runs (`make soak`); Ctrl-C
taken back when the suite runs as a background job."""

from __future__ import annotations

import os
import signal

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=200,
    deadline=None,
    derandomize=True,  # CI must not flake: the same examples every run
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "nightly",
    max_examples=2000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# A background job (`make test &`, a script without job control) starts with SIGINT ignored, and
# so would every `paysim` the tests start: the tests of Ctrl-C would send it to processes that
# cannot hear it. Python's own handler here makes the children start with the default again.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
