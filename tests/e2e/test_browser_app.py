"""The running app in a real headless browser (Debian's Chromium driven by Playwright): label with the keyboard,
check the label reached the store, and save a screenshot of each page to test-artifacts/."""

from __future__ import annotations

import json
import os
import statistics
import time

import pytest

from skysift import config
from skysift.app.trainer import TrainerClient
from skysift.app.ui import NAME_FIELD
from skysift.modeltags import label_keys
from skysift.trainer.labels import LabelStore
from tests.app_support import (
    label_queue,
    oracle_labels,
    run_round,
)
from tests.e2e.browser import (
    ARTIFACTS,
    MARKS,
    assert_not_blank,
    assert_on_first_screen,
    assert_rounds_page_tells_the_truth,
    idle,
    image,
    open_label_page,
    overflow_px,
    running_app,
    screenshot,
    shown_candid,
)

EXPERIMENT = "browser"
USER = "browser-labeller"
N = 5

pytestmark = MARKS


@pytest.fixture(scope="module")
def app(browser_mlflow, tmp_path_factory):  # browser_mlflow first: without Chromium, fail before the set-up
    """Trainer and Streamlit as processes on loopback, a store with real alerts, round 1 of EXPERIMENT queued."""
    work = tmp_path_factory.mktemp("browser")
    env = {**os.environ, **browser_mlflow.env, "SKYSIFT_STORE_URL": str(work / "store"),
           "SKYSIFT_SECRETS_DIR": str(work / "no-secrets"), "SKYSIFT_LOG_JSON": "false",
           "SKYSIFT_APP_USER": USER, "SKYSIFT_APP_EXPERIMENT": EXPERIMENT}

    def rounds(address, table):
        """Round 0 answered by the oracle, so round 1 has a model, metrics and artifacts for the rounds page."""
        run_round(address, EXPERIMENT, initial=30, batch=N)
        client = TrainerClient(config.Settings(trainer_address=address), timeout=300)
        label_queue(client, EXPERIMENT, oracle_labels(table))
        assert run_round(address, EXPERIMENT, initial=30, batch=N).model_version
        client.collect_dataset("browser-set", "ztf", None, None, 0.9, True, 1000, "galactic")

    with running_app(env, work, rounds) as (url, store, _):
        yield url, store


def test_keyboard_label_reaches_the_store(app, page):
    url, store = app
    open_label_page(page, url, "galactic")
    page.get_by_text(f"0 of {N} this round").wait_for(timeout=30_000)
    idle(page)
    candid = shown_candid(page)
    # what a labeller must see at once: which alert, its light curve and its three stamps
    assert_on_first_screen(page, page.locator(".sk-card"), "the alert (heading, light curve, stamps, facts)")
    assert_on_first_screen(page, page.locator(".sk-lc img"), "the light curve")
    assert_not_blank(screenshot(page, "label"))
    assert overflow_px(page) <= 0, "the label page needs a scroll at 1400×1000"
    # the stamps are at least 200 px on screen, beside the light curve (same row)
    stamps = page.locator(".sk-stamp img.sk-small")
    assert stamps.count() == 3
    boxes = [assert_on_first_screen(page, stamps.nth(i), f"stamp {i}") for i in range(3)]
    curve = page.locator(".sk-lc img").bounding_box()
    assert all(b["width"] >= 200 and b["height"] >= 200 for b in boxes), boxes
    assert all(abs(b["y"] - curve["y"]) < 40 and b["x"] > curve["x"] + curve["width"] for b in boxes)
    # the label buttons sit on one row
    tops = {round(page.locator(f"[class*=st-key-label_{lab}_] button").bounding_box()["y"]) for lab in label_keys()}
    assert len(tops) == 1, tops
    stamps.nth(2).click()
    page.locator(".sk-zoom img").nth(2).wait_for(state="visible")
    assert page.locator(".sk-zoom img").nth(2).bounding_box()["width"] >= 400
    screenshot(page, "label-stamp-enlarged")
    stamps.nth(2).click()
    page.keyboard.press(label_keys()["galactic"])
    try:
        page.get_by_text(f"1 of {N} this round").wait_for(timeout=60_000)
    finally:
        screenshot(page, "label-after-key")
    latest = LabelStore(store).latest()
    assert (latest[candid].label, latest[candid].user, latest[candid].source) == ("galactic", USER, "human")
    # the labelled alert leaves the list (hidden by default): the next one is #1 of the N - 1 left
    page.locator(".sk-head").filter(has_text=f"#1 of {N - 1} ·").wait_for(timeout=30_000)
    assert shown_candid(page) != candid


def test_rounds_page_renders(app, page):
    url, _ = app
    page.goto(f"{url}/rounds")
    page.get_by_role("heading", name="Rounds").wait_for(timeout=60_000)
    page.get_by_text("Per round").wait_for(timeout=60_000)
    page.get_by_text("Champion:").wait_for(timeout=60_000)
    idle(page)
    assert_on_first_screen(page, page.locator("[data-testid=stDataFrame]").first, "the table of rounds")
    assert_not_blank(screenshot(page, "rounds"))
    assert_rounds_page_tells_the_truth(page, champion_round=1)
    page.get_by_role("tab", name="One round").click()
    page.get_by_text("Permutation importance").first.wait_for(timeout=60_000)
    idle(page)
    assert_not_blank(screenshot(page, "rounds-one-round"))
    assert_on_first_screen(page, image(page, "held-out confusion matrix"), "the confusion matrix")


def test_a_name_given_in_one_session_names_the_rounds_page_opened_by_its_url(app, page):
    """Opening /rounds by its URL starts a new Streamlit session: it started with the configured name, not the
    one the labeller gave (and with no configured name, unnamed). The browser keeps the name given last."""
    from playwright.sync_api import expect

    url, _ = app
    open_label_page(page, url, "galactic")
    name = page.get_by_label(NAME_FIELD)
    name.fill("renamed-labeller")
    name.press("Enter")
    page.wait_for_function("() => document.cookie.includes('skysift_name=renamed-labeller')", timeout=60_000)
    page.goto(f"{url}/rounds")
    page.get_by_role("heading", name="Rounds").wait_for(timeout=60_000)
    expect(page.get_by_label(NAME_FIELD)).to_have_value("renamed-labeller", timeout=30_000)


def test_datasets_page_renders(app, page):
    url, _ = app
    page.goto(f"{url}/datasets")
    page.get_by_role("heading", name="Datasets").wait_for(timeout=60_000)
    page.get_by_text("Collect a new dataset").wait_for(timeout=60_000)
    page.get_by_text("browser-set").first.wait_for(timeout=60_000)
    idle(page)
    assert_on_first_screen(page, page.locator("[data-testid=stDataFrame]").first, "the table of datasets")
    assert_not_blank(screenshot(page, "datasets"))
    bars = page.locator("[data-testid=stVegaLiteChart] .mark-rect path")
    heights = [bars.nth(i).bounding_box()["height"] for i in range(bars.count())]
    assert len(heights) == 2 and min(heights) >= 10, f"class bars drawn {heights} px tall"  # galactic, not_galactic



# In one step, so no redraw can come between them: read the candid on screen and press a key as a labeller
# would (the keydown event Streamlit's shortcuts listen to).
PRESS = """(key) => {
    const card = document.querySelector('.sk-card');
    const shown = card ? card.dataset.candid : null;
    for (const type of ['keydown', 'keyup']) {
        document.body.dispatchEvent(new KeyboardEvent(type, {key, code: 'Digit' + key, bubbles: true,
                                                             cancelable: true}));
    }
    return shown;
}"""


def test_keys_pressed_as_fast_as_the_page_allows_label_only_the_alert_on_screen(app, page):
    """Each key is pressed the moment a new alert shows, and every third one again at once (while the page is
    still redrawing): every label stored must be one pressed while its alert was on screen."""
    url, store = app
    page.goto(url)
    page.locator(".sk-card").wait_for(timeout=60_000)
    idle(page)
    earlier = len(LabelStore(store).events())  # the other tests' labels are not this test's
    keys = [label_keys()[label] for label in ("galactic", "extragalactic", "varstar", "agn")]
    pressed: list[tuple[int, str]] = []  # (candid on screen, label key) for every press
    settle_s = []
    for n in range(20):
        if not page.locator(".sk-card").count():
            break
        key = keys[n % len(keys)]
        started = time.monotonic()
        shown = page.evaluate(PRESS, key)
        pressed.append((int(shown), key))
        if n % 3 == 2:  # a second key straight away, on whatever the page shows now
            again = page.evaluate(PRESS, keys[(n + 1) % len(keys)])
            if again:
                pressed.append((int(again), keys[(n + 1) % len(keys)]))
        page.wait_for_function("c => { const e = document.querySelector('.sk-card');"
                               " return !e || e.dataset.candid !== c; }", arg=shown, timeout=60_000)
        idle(page)
        settle_s.append(time.monotonic() - started)
    screenshot(page, "label-fast-keys-done")
    by_key = {v: k for k, v in label_keys().items()}
    allowed = {(candid, by_key[key]) for candid, key in pressed}
    events = LabelStore(store).events()[earlier:]
    assert {e.candid for e in events} == {candid for candid, _ in pressed}
    assert len(pressed) >= N - 1 and not page.locator(".sk-card").count()  # the whole queue, key by key
    stray = [(e.candid, e.label) for e in events if (e.candid, e.label) not in allowed]
    assert not stray, f"labels stored for alerts that were not on screen when the key was pressed: {stray}"
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "label-key-to-settled.json").write_text(json.dumps(
        {"median_s": statistics.median(settle_s), "n": len(settle_s), "seconds": settle_s}, indent=1))
