"""What the browser tests share: Debian's Chromium, the app as a `streamlit run` process, waits and screenshots.

The ``browser`` and ``page`` fixtures built on these live in tests/e2e/conftest.py."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests import servers
from tests.app_support import APP, labelling_batch, start_trainer
from tests.determinism import IN_CI

CHROMIUM = shutil.which("chromium")  # what `make system-deps` checks and installs: Debian's chromium on PATH
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]

VIEWPORT = {"width": 1400, "height": 1000}  # a laptop screen: the label page must fit it without scrolling
MISSING = "no chromium on PATH: `make system-deps` installs Debian's chromium package"
# In CI a missing Chromium fails the browser tests (see the ``browser`` fixture); only a local run may skip them.
MARKS = [pytest.mark.browser, pytest.mark.skipif(CHROMIUM is None and not IN_CI, reason=MISSING)]


def start_streamlit(env: dict, workdir: Path, port: int | None = None, script: Path = APP) -> servers.Proc:
    """The app on 127.0.0.1 as deployed (`skysift app`), run from ``workdir`` (so ``workdir/.streamlit/secrets.toml``
    is its secrets file); ``port`` when the caller had to know it before (an OIDC redirect URI names it)."""
    port = port or servers.free_port()
    log = workdir / "streamlit.log"
    cmd = [str(Path(sys.executable).parent / "skysift"), "app", "--script", str(script), "--server.port", str(port),
           "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false",
           "--server.fileWatcherType", "none"]
    proc = subprocess.Popen(cmd, stdout=open(log, "wb"), stderr=subprocess.STDOUT, env=env, cwd=workdir,
                            start_new_session=True)
    running = servers.Proc(proc, port, log_path=log)
    try:
        servers.wait_port(port, 60, proc, "streamlit")
        servers.wait_http(f"http://127.0.0.1:{port}/_stcore/health", proc, 60)
    except Exception:
        running.stop()
        raise
    return running


def open_label_page(page, url: str, label: str) -> None:
    """Load the app and wait until its label page is drawn: the ``label`` button mounted (shortcuts work once their
    buttons are) and the last element of the facts column shown."""
    page.goto(url)
    page.locator(f"[class*=st-key-label_{label}_] button").wait_for(timeout=60_000)
    page.get_by_text("Go to #").wait_for(timeout=60_000)


@contextlib.contextmanager
def running_app(env: dict, workdir: Path, prepare: Callable, port: int | None = None):
    """Real alerts (with stamps and features) in ``env``'s store, the trainer and the app as processes on
    loopback; ``prepare(trainer_address, alerts_table)`` runs between the two (rounds, labels). ``env`` gains the
    trainer's address. Yields (the app's URL, the store, the app's process)."""
    from skysift import config
    from skysift.store import open_store

    settings = config.Settings(store_url=env["SKYSIFT_STORE_URL"])
    store = open_store(settings=settings)
    _, table = labelling_batch(store, settings)
    trainer = start_trainer(workdir, env)
    env.update(trainer.env)
    try:
        prepare(trainer.env["SKYSIFT_TRAINER_ADDRESS"], table)
        streamlit = start_streamlit(env, workdir, port)
        try:
            yield f"http://127.0.0.1:{streamlit.port}", store, streamlit
        finally:
            streamlit.stop()
    finally:
        trainer.stop()


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


MIN_DRAWN_PX = 40  # smaller than any stamp, plot or table the pages draw at the tests' 1400x1000 viewport


def image(page, caption: str):
    """The picture of the ``st.image`` whose caption holds ``caption``."""
    return page.locator("[data-testid=stImageContainer]").filter(has_text=caption).locator("img").first


def assert_on_first_screen(page, locator, what: str) -> dict:
    """``locator`` is drawn (at least MIN_DRAWN_PX each way) and wholly inside the viewport, so it is seen without
    scrolling; a picture has also loaded (a broken image keeps its box but has no pixels). Returns its box."""
    locator.wait_for(timeout=60_000)
    box, view = locator.bounding_box(), page.viewport_size
    assert box and box["width"] >= MIN_DRAWN_PX and box["height"] >= MIN_DRAWN_PX, f"{what} is not drawn: {box}"
    assert box["x"] >= 0 and box["y"] >= 0 and box["x"] + box["width"] <= view["width"] \
        and box["y"] + box["height"] <= view["height"], f"{what} needs scrolling: {box} in a {view} viewport"
    if locator.evaluate("e => e.tagName") == "IMG":
        assert locator.evaluate("img => img.complete && img.naturalWidth > 0"), f"{what}: the picture did not load"
    return box


def assert_not_blank(path: Path, min_colours: int = 64) -> None:
    """A saved screenshot shows something: a blank or error-only page has a handful of colours."""
    from PIL import Image

    colours = Image.open(path).convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is None or len(colours) >= min_colours, f"{path} looks blank: {len(colours)} colours"


def shown_candid(page) -> int:
    """The candid of the alert on screen (the card carries it)."""
    return int(page.locator(".sk-card").get_attribute("data-candid"))


def table_cells(page, nth: int = 0) -> tuple[list[str], list[list[str]]]:
    """(headers, rows) of the ``nth`` st.dataframe as drawn: the grid paints a canvas, and keeps an accessible table
    of the cells in view beside it (columns scrolled off to the right are not in it)."""
    grid = page.locator("[data-testid=stDataFrame]").nth(nth)
    rows = grid.evaluate("g => [...g.querySelectorAll('tr')].map(r => [...r.querySelectorAll('th,td')]"
                         ".map(c => c.textContent.trim()))")
    return rows[0], [r for r in rows[1:] if r]


def axis_labels(page, title: str) -> list[str]:
    """The tick labels of the Vega-Lite axis titled ``title`` (the charts are drawn as SVG)."""
    return page.evaluate("""title => [...document.querySelectorAll('[data-testid=stVegaLiteChart] g.role-axis')]
        .filter(a => [...a.querySelectorAll('.role-axis-title text')].some(t => t.textContent === title))
        .flatMap(a => [...a.querySelectorAll('.role-axis-label text')].map(t => t.textContent))""", title)


def assert_rounds_page_tells_the_truth(page, champion_round: int) -> None:
    """The rounds page as a scanner reads it: the wide layout of app.py (not a pages/ file served on its own), F1
    with the held-out n it rests on and its interval, the champion's round starred, a dash (never "None") where a
    round has no value, and whole numbers of labels on the learning curve's axis."""
    width = page.evaluate("() => document.querySelector('[data-testid=stMainBlockContainer]')"
                          ".getBoundingClientRect().width")
    assert width >= 1000, f"the rounds page is not in the wide layout: {width} px"
    headers, rows = table_cells(page)
    assert headers[:2] == ["champion", "round"] and {"f1", "f1 n", "f1 95%"} <= set(headers), headers
    cells = [dict(zip(headers, row)) for row in rows]
    assert not any(v in ("None", "nan", "<NA>") for row in cells for v in row.values()), cells
    starred = [row for row in cells if row["champion"] == "★"]
    assert [int(row["round"]) for row in starred] == [champion_round], cells
    assert int(starred[0]["f1 n"]) > 0 and "–" in starred[0]["f1 95%"], starred
    assert 0 <= float(starred[0]["f1"]) <= 1 and len(starred[0]["f1"].split(".")[1]) == 3
    round_0 = next(row for row in cells if row["round"] == "0")
    assert round_0["f1"] == round_0["f1 n"] == "–", round_0  # round 0 is evaluated on nothing
    ticks = axis_labels(page, "labels used for training")
    assert ticks and all(t.isdigit() for t in ticks), ticks
    assert page.locator("[data-testid=stVegaLiteChart] .mark-symbol path[fill='#f2b701']").count() == 1
