"""The app's OIDC login for real: `streamlit run` configured by an ``[auth]`` secrets.toml as the Helm chart mounts
it, Streamlit's ``st.login`` (Authlib) against a local OpenID Connect provider (tests/fakes/oidc.py), in Chromium.

A labeller logs in through the provider's redirects, labels with the keyboard as that identity, and logs out
through the provider's end-session endpoint; a rejected client secret leaves the browser logged out on the gate."""

from __future__ import annotations

import pytest

from skysift.modeltags import label_keys
from skysift.trainer.labels import LabelStore
from tests import servers
from tests.app_support import run_round
from tests.e2e.browser import MARKS, idle, running_app, screenshot, shown_candid
from tests.fakes.oidc import FakeOIDC

EXPERIMENT = "oidc"
N = 4
WAIT_MS = 30_000

pytestmark = MARKS


@pytest.fixture(scope="module")
def idp_server():
    fake = FakeOIDC().start()
    yield fake
    fake.stop()


@pytest.fixture
def idp(idp_server):
    """The module's provider with its records cleared, so a test sees only its own requests."""
    with idp_server.lock:
        idp_server.requests.clear()
        idp_server.logouts.clear()
    return idp_server


@pytest.fixture(scope="module")
def app(browser_mlflow, tmp_path_factory, idp_server):  # browser_mlflow first: without Chromium, fail before the set-up
    """Trainer and Streamlit on loopback, round 0 of EXPERIMENT queued, the app's login delegated to the fake
    provider."""
    idp = idp_server
    work = tmp_path_factory.mktemp("oidc")
    port = servers.free_port()
    redirect_uri = f"http://127.0.0.1:{port}/oauth2callback"
    idp.redirect_uris.append(redirect_uri)
    (work / ".streamlit").mkdir()
    (work / ".streamlit" / "secrets.toml").write_text(
        "[auth]\n"
        f'redirect_uri = "{redirect_uri}"\n'
        'cookie_secret = "a-random-cookie-secret-for-the-test-0123456789"\n'
        f'client_id = "{idp.client_id}"\n'
        f'client_secret = "{idp.client_secret}"\n'
        f'server_metadata_url = "{idp.metadata_url}"\n')
    # as in the cluster (the Helm chart sets SKYSIFT_APP_CLUSTER), where a login is mandatory
    env = {**servers.inherited_env(), **browser_mlflow.env, "SKYSIFT_STORE_URL": str(work / "store"),
           "SKYSIFT_SECRETS_DIR": str(work / "no-secrets"), "SKYSIFT_LOG_JSON": "false",
           "SKYSIFT_APP_CLUSTER": "true", "SKYSIFT_APP_EXPERIMENT": EXPERIMENT}
    with running_app(env, work, lambda address, _: run_round(address, EXPERIMENT, initial=N), port) as running:
        yield running


def login_gate(page):
    button = page.get_by_role("button", name="Log in")
    button.wait_for(timeout=WAIT_MS)
    return button


def test_oidc_login_labels_as_the_provider_identity_and_logs_out(app, idp, page):
    url, store, _ = app
    page.goto(url)
    login_gate(page)
    assert page.locator("[class*=st-key-label_galactic_]").count() == 0  # nothing of the label page before the login
    screenshot(page, "oidc-login-gate")
    login_gate(page).click()
    # through /auth/login, the provider's /authorize and /oauth2callback back to the app, now logged in
    page.get_by_text(f"Signed in as {idp.user['email']}").wait_for(timeout=WAIT_MS)
    page.locator("[class*=st-key-label_galactic_] button").wait_for(timeout=WAIT_MS)
    page.get_by_text("Go to #").wait_for(timeout=WAIT_MS)
    page.get_by_text(f"0 of {N} this round").wait_for(timeout=WAIT_MS)
    idle(page)
    screenshot(page, "oidc-label")
    (authorize,) = idp.calls("/authorize")
    assert authorize.params["nonce"] and authorize.params["code_challenge_method"] == "S256"
    (token,) = idp.calls("/token")
    assert token.status == 200 and token.authorization.startswith("Basic ") and token.params["code_verifier"]

    candid = shown_candid(page)
    page.keyboard.press(label_keys()["galactic"])
    page.get_by_text(f"1 of {N} this round").wait_for(timeout=WAIT_MS)
    event = LabelStore(store).latest()[candid]
    assert (event.label, event.user, event.source) == ("galactic", idp.user["email"], "human")

    # through /auth/logout, the provider's end-session endpoint and /oauth2callback back to the app
    with page.expect_navigation(url=f"{url}/", timeout=WAIT_MS):
        page.get_by_role("button", name="Log out").click()
    login_gate(page)
    (logout,) = idp.logouts
    assert logout["client_id"] == idp.client_id and logout["id_token_hint"]
    assert logout["post_logout_redirect_uri"] in idp.redirect_uris
    page.goto(url)  # a new visit stays logged out: the identity cookie is gone
    login_gate(page)
    assert page.get_by_text("Signed in as").count() == 0


def test_rejected_client_secret_leaves_the_browser_logged_out(app, idp, page, monkeypatch):
    url, _, streamlit = app
    monkeypatch.setattr(idp, "client_secret", "rotated-at-the-provider")  # the app's secret is now wrong
    page.goto(url)
    with page.expect_navigation(url=f"{url}/", timeout=WAIT_MS):  # back from the provider's redirects
        login_gate(page).click()
    login_gate(page)
    idle(page)
    screenshot(page, "oidc-login-failed")
    assert idp.calls("/token")[-1].status == 401  # invalid_client
    assert page.get_by_text("The login did not complete").count() == 1
    assert page.locator("[data-testid=stException]").count() == 0
    assert page.get_by_text("Signed in as").count() == 0
    assert "OAuth token exchange failed" in streamlit.log_path.read_text()
