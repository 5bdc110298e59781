"""Without Chromium the browser tests fail in CI, saying why, instead of skipping: `make test` stops at
system-deps, and the tests themselves fail at their first fixture."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def no_chromium_path(tmp_path: Path) -> str:
    """A PATH with the few tools the recipe uses, and neither chromium nor apt-get."""
    tools = tmp_path / "bin"
    tools.mkdir()
    for name in ("id", "sh"):
        (tools / name).symlink_to(shutil.which(name))
    return str(tools)


def test_make_system_deps_without_chromium_fails_saying_why(tmp_path):
    out = subprocess.run([shutil.which("make"), "-s", "system-deps"], cwd=REPO, env={"PATH": no_chromium_path(tmp_path)},
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode != 0
    assert "chromium" in out.stderr and "the browser tests need it" in out.stderr, out.stderr


def test_browser_tests_in_ci_without_chromium_fail_instead_of_skipping(tmp_path):
    env = {**os.environ, "CI": "true", "PATH": no_chromium_path(tmp_path)}
    out = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-x", "-q",
                          "tests/e2e/test_browser_app.py::test_rounds_page_renders"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 1 and "1 error" in out.stdout and "skipped" not in out.stdout, out.stdout[-3000:]
    assert "no chromium on PATH" in out.stdout
