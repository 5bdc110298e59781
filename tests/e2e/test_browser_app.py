"""The running app in a real headless browser (Debian's Chromium driven by Playwright): label with the keyboard,
check the label reached the store, and save a screenshot of each page to test-artifacts/."""

from __future__ import annotations

import os

import pytest

from skysift import config
from skysift.app.trainer import TrainerClient
from skysift.modeltags import LABEL_KEYS
from skysift.store import open_store
from skysift.trainer.labels import LabelStore
from tests.app_support import (
    label_queue,
    labelling_batch,
    oracle_labels,
    run_round,
    start_trainer,
)
from tests.e2e.browser import (
    MARKS,
    assert_not_blank,
    assert_on_first_screen,
    idle,
    image,
    screenshot,
    start_streamlit,
)

EXPERIMENT = "browser"
USER = "browser-labeller"
N = 5

pytestmark = MARKS


@pytest.fixture(scope="module")
def app(browser, tmp_path_factory, mlflow_server):  # browser first: without Chromium, fail before the set-up
    """Trainer and Streamlit as processes on loopback, a store with real alerts, round 1 of EXPERIMENT queued."""
    work = tmp_path_factory.mktemp("browser")
    env = {**os.environ, **mlflow_server.env, "SKYSIFT_STORE_URL": str(work / "store"),
           "SKYSIFT_SECRETS_DIR": str(work / "no-secrets"), "SKYSIFT_LOG_JSON": "false",
           "SKYSIFT_APP_USER": USER, "SKYSIFT_APP_EXPERIMENT": EXPERIMENT}
    settings = config.Settings(store_url=env["SKYSIFT_STORE_URL"])
    store = open_store(settings=settings)
    _, table = labelling_batch(store, settings)
    trainer = start_trainer(work, env)
    env.update(trainer.env)
    address = trainer.env["SKYSIFT_TRAINER_ADDRESS"]
    try:
        # round 0 answered by the oracle, so round 1 has a model, metrics and artifacts for the rounds page
        run_round(address, EXPERIMENT, initial=30, batch=N)
        client = TrainerClient(config.Settings(trainer_address=address), timeout=300)
        label_queue(client, EXPERIMENT, oracle_labels(table))
        assert run_round(address, EXPERIMENT, initial=30, batch=N).model_version
        client.collect_dataset("browser-set", "ztf", None, None, 0.9, True, 1000, "galactic")
        streamlit = start_streamlit(env, work)
        try:
            yield f"http://127.0.0.1:{streamlit.port}", store
        finally:
            streamlit.stop()
    finally:
        trainer.stop()


def test_keyboard_label_reaches_the_store(app, page):
    url, store = app
    page.goto(url)
    # shortcuts work once their buttons are mounted; the last element of the facts column means the page is drawn
    page.locator(".st-key-label_galactic button").wait_for(timeout=60_000)
    page.get_by_text("Go to alert #").wait_for(timeout=60_000)
    page.get_by_text(f"0 of {N} this round").wait_for(timeout=30_000)
    idle(page)
    heading = page.locator("h3").filter(has_text="candid").first
    candid = int(heading.inner_text().split("candid ")[1].split()[0])
    # what a labeller must see at once: which alert, its light curve and its three stamps
    assert_on_first_screen(page, heading, "the alert's heading")
    for caption in ("Light curve", "science", "template", "difference"):
        assert_on_first_screen(page, image(page, caption), caption)
    assert_not_blank(screenshot(page, "label"))
    page.keyboard.press(LABEL_KEYS["galactic"])
    try:
        page.get_by_text(f"1 of {N} this round").wait_for(timeout=60_000)
    finally:
        screenshot(page, "label-after-key")
    latest = LabelStore(store).latest()
    assert (latest[candid].label, latest[candid].user, latest[candid].source) == ("galactic", USER, "human")
    # the labelled alert leaves the list (hidden by default): the next one is #1 of the N - 1 left
    page.locator("h3").filter(has_text=f"#1 of {N - 1} ·").wait_for(timeout=30_000)
    assert f"candid {candid}" not in page.locator("h3").filter(has_text="candid").first.inner_text()


def test_rounds_page_renders(app, page):
    url, _ = app
    page.goto(f"{url}/rounds")
    page.get_by_role("heading", name="Rounds").wait_for(timeout=60_000)
    page.get_by_text("Per round").wait_for(timeout=60_000)
    page.get_by_text("Champion:").wait_for(timeout=60_000)
    idle(page)
    assert_on_first_screen(page, page.locator("[data-testid=stDataFrame]").first, "the table of rounds")
    assert_not_blank(screenshot(page, "rounds"))


def test_datasets_page_renders(app, page):
    url, _ = app
    page.goto(f"{url}/datasets")
    page.get_by_role("heading", name="Datasets").wait_for(timeout=60_000)
    page.get_by_text("Collect a new dataset").wait_for(timeout=60_000)
    page.get_by_text("browser-set").first.wait_for(timeout=60_000)
    idle(page)
    assert_on_first_screen(page, page.locator("[data-testid=stDataFrame]").first, "the table of datasets")
    assert_not_blank(screenshot(page, "datasets"))
