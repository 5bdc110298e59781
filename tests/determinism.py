"""What makes a test run repeatable on CI and patient enough on a loaded machine, in one place.

- ``IN_CI`` (the ``CI`` environment variable, set by .ci/run): CI runs are repeatable, local runs explore.
- ``SEED``: the session's seed for fault injection and hypothesis. Fixed (0) in CI; random locally, printed in
  the pytest header; ``SKYSIFT_TEST_SEED`` replays a run.
- ``TIME_FACTOR``: every timeout a test sets (client timeouts against local fakes, a fake's delay, waits for a
  server) is multiplied by it. 3 by default: tests run on 2 cores shared with other jobs, where a request a fake
  answers at once can take a few hundred milliseconds. ``SKYSIFT_TEST_TIME_FACTOR`` overrides it.
"""

from __future__ import annotations

import os
import random

IN_CI = os.environ.get("CI", "").lower() not in ("", "0", "false", "no")
SEED = int(os.environ.get("SKYSIFT_TEST_SEED") or (0 if IN_CI else random.randrange(2**32)))
TIME_FACTOR = float(os.environ.get("SKYSIFT_TEST_TIME_FACTOR", "3"))


def scaled(seconds: float) -> float:
    """``seconds`` on this machine: a timeout or delay a test sets, times :data:`TIME_FACTOR`."""
    return seconds * TIME_FACTOR


def rng_for(name: str) -> random.Random:
    """A random generator for one test, from the session seed and the test's name (tests draw independently)."""
    return random.Random(f"{SEED}:{name}")
