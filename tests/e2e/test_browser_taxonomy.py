"""A team's own taxonomy file in the running app (real Chromium): the label buttons and their keys are the file's,
and a key press stores that label. The screenshot is test-artifacts/label-custom-taxonomy.png."""

from __future__ import annotations

import os
import textwrap

import pytest

from skysift.trainer.labels import LabelStore
from tests.app_support import run_round
from tests.e2e.browser import (
    MARKS,
    assert_not_blank,
    idle,
    open_label_page,
    running_app,
    screenshot,
    shown_candid,
)

EXPERIMENT = "team-classes"
USER = "taxonomy-labeller"
TAG = "transients"
# keys other than the packaged file's, so that a page still drawing the default vocabulary fails
LABELS = {"snia": ("7", "#6a1b9a"), "snii": ("8", "#2e7d32"), "tde": ("9", "#ef6c00"), "skip": ("0", "#757575")}
TAXONOMY = "labels:\n" + "".join(
    f'  - {{name: {name}, key: "{key}", colour: "{colour}", description: The {name} class of this team.}}\n'
    for name, (key, colour) in LABELS.items()) + textwrap.dedent(f"""\
    tags:
      - name: {TAG}
        kind: multiclass
        classes: [snia, snii, tde]
        hierarchy:
          SN: [snia, snii]
    default_tag: {TAG}
    """)

pytestmark = MARKS


@pytest.fixture(scope="module")
def app(browser_mlflow, tmp_path_factory):  # browser_mlflow first: without Chromium, fail before the set-up
    """Trainer and Streamlit reading the team's file, and round 0 of the team's tag queued on real alerts."""
    work = tmp_path_factory.mktemp("taxonomy")
    (work / "team.yaml").write_text(TAXONOMY)
    env = {**os.environ, **browser_mlflow.env, "SKYSIFT_STORE_URL": str(work / "store"),
           "SKYSIFT_SECRETS_DIR": str(work / "no-secrets"), "SKYSIFT_LOG_JSON": "false",
           "SKYSIFT_APP_USER": USER, "SKYSIFT_APP_EXPERIMENT": EXPERIMENT,
           "SKYSIFT_TAXONOMY_FILE": str(work / "team.yaml")}
    with running_app(env, work, lambda address, _: run_round(address, EXPERIMENT, initial=5, batch=5,
                                                              model_tag=TAG)) as (url, store, _):
        yield url, store


def test_the_files_labels_are_the_buttons_and_a_key_stores_its_label(app, page):
    url, store = app
    open_label_page(page, url, "snia")
    idle(page)
    shown = {page.locator(f"[class*=st-key-label_{name}_] button").inner_text().split("\n")[0] for name in LABELS}
    assert shown == set(LABELS)
    assert page.locator("[class*=st-key-label_galactic_]").count() == 0  # the packaged vocabulary is not drawn
    bar = page.locator("[class*=st-key-label_tde_] button").evaluate("b => getComputedStyle(b).borderLeftColor")
    assert bar == "rgb(239, 108, 0)"  # the file's colour for tde, #ef6c00
    page.get_by_text("model learns snia, snii, tde, one class each").wait_for(timeout=10_000)
    assert page.locator("span[title='The tde class of this team.']").inner_text() == "tde"  # its description
    assert_not_blank(screenshot(page, "label-custom-taxonomy"))
    candid = shown_candid(page)
    page.keyboard.press(LABELS["tde"][0])
    page.get_by_text("1 of 5 this round").wait_for(timeout=60_000)
    latest = LabelStore(store).latest()
    assert (latest[candid].label, latest[candid].user) == ("tde", USER)
