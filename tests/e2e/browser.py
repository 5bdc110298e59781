"""What the browser tests share: Debian's Chromium, the app as a `streamlit run` process, waits and screenshots.

The ``browser`` and ``page`` fixtures built on these live in tests/e2e/conftest.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests import servers
from tests.app_support import APP

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]

VIEWPORT = {"width": 1400, "height": 1000}  # a laptop screen: the label page must fit it without scrolling

MARKS = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's Chromium at /usr/bin/chromium "
                                                     "(`make system-deps` installs it)"),
]


def start_streamlit(env: dict, workdir: Path, port: int | None = None) -> servers.Proc:
    """The app on 127.0.0.1, run from ``workdir`` (so ``workdir/.streamlit/secrets.toml`` is its secrets file);
    ``port`` when the caller had to know it before (an OIDC redirect URI names it)."""
    port = port or servers.free_port()
    log = workdir / "streamlit.log"
    cmd = [str(Path(sys.executable).parent / "streamlit"), "run", str(APP), "--server.port", str(port),
           "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false",
           "--server.fileWatcherType", "none"]
    proc = subprocess.Popen(cmd, stdout=open(log, "wb"), stderr=subprocess.STDOUT, env=env, cwd=workdir,
                            start_new_session=True)
    running = servers.Proc(proc, port, log_path=log)
    try:
        servers.wait_port(port, 60, proc, "streamlit")
        servers._wait_http(f"http://127.0.0.1:{port}/_stcore/health", proc, 60)
    except Exception:
        running.stop()
        raise
    return running


def idle(page) -> None:
    """Wait until the script run is over and every element is drawn (Streamlit shows a status widget while it
    runs, and skeletons while an element's code is loading)."""
    page.wait_for_function("() => !document.querySelector('[data-testid=stStatusWidget]')"
                           " && !document.querySelector('[data-testid^=stSkeleton]')", timeout=60_000)


def screenshot(page, name: str) -> Path:
    """The viewport as a scanner sees it (what lies below the fold is not in the picture)."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path


def overflow_px(page) -> int:
    """How far the page's content reaches below the viewport, in pixels (0: nothing to scroll to). Streamlit
    scrolls its main section, not the document, so both are measured."""
    return page.evaluate("""() => Math.max(...[document.scrollingElement,
        document.querySelector('[data-testid=stMain]'),
        document.querySelector('[data-testid=stAppViewContainer]')]
        .filter(Boolean).map(e => e.scrollHeight - e.clientHeight))""")
