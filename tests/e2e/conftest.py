"""Browser fixtures for the app's Chromium tests (helpers in tests/e2e/browser.py)."""

from __future__ import annotations

import pytest

from tests.e2e.browser import CHROMIUM, CHROMIUM_ARGS, MISSING, VIEWPORT


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    if CHROMIUM is None:  # reached only in CI, where the tests must not skip
        pytest.fail(MISSING, pytrace=False)
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def browser_mlflow(browser, request):
    """The session's MLflow server, asked for once ``browser`` is there: a session fixture named in an app fixture's
    arguments is set up before any module fixture, so without Chromium the module started MLflow (a minute on a
    loaded machine) before failing."""
    return request.getfixturevalue("mlflow_server")


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport=VIEWPORT)
    yield context.new_page()
    context.close()
