"""CI runs are repeatable (one fixed seed, hypothesis derandomized) and local runs explore with a printed seed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# What a test session sees once the root conftest is loaded: the seed, and hypothesis's loaded profile.
PROBE = ("import tests.conftest; from hypothesis import settings; from tests import determinism; "
         "print(determinism.SEED, settings.default.derandomize, settings.default.database is None)")


def session_view(**env: str) -> tuple[str, str, str]:
    base = {k: v for k, v in os.environ.items() if k not in ("CI", "SKYSIFT_TEST_SEED")}
    out = subprocess.run([sys.executable, "-c", PROBE], env={**base, **env}, cwd=REPO, capture_output=True, text=True,
                         timeout=120, check=True)
    return tuple(out.stdout.split())


def test_ci_runs_use_one_fixed_seed_and_derandomized_hypothesis():
    first, second = session_view(CI="true"), session_view(CI="true")
    assert first == second == ("0", "True", "True")


def test_local_runs_draw_a_new_seed_that_skysift_test_seed_replays():
    (seed_a, derandomized, _), (seed_b, _, _) = session_view(), session_view()
    assert seed_a != seed_b and derandomized == "False"
    assert session_view(SKYSIFT_TEST_SEED=seed_a)[0] == seed_a


def test_the_session_header_prints_the_seed():
    out = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "tests/unit/test_determinism.py"],
                         env={**os.environ, "SKYSIFT_TEST_SEED": "4242"}, cwd=REPO, capture_output=True, text=True,
                         timeout=120, check=False)
    assert "skysift test seed 4242" in out.stdout, out.stdout[-2000:]
