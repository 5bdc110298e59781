"""The pages without services behind them: clear messages, and the login gate (AppTest, no browser)."""

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from tests.app_support import APP
from tests.servers import free_port


@pytest.fixture
def app_env(tmp_path, monkeypatch):
    """Nothing listening at the trainer's or MLflow's address; a fresh store; no secrets."""
    trainer, mlflow = free_port(), free_port()
    env = {"SKYSIFT_STORE_URL": str(tmp_path / "store"), "SKYSIFT_TRAINER_ADDRESS": f"127.0.0.1:{trainer}",
           "SKYSIFT_MLFLOW_TRACKING_URI": f"http://127.0.0.1:{mlflow}", "SKYSIFT_SECRETS_DIR": str(tmp_path / "none")}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    st.cache_resource.clear()
    st.cache_data.clear()
    yield env
    st.cache_resource.clear()
    st.cache_data.clear()


def run(page: str | None = None) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    if page:
        at.switch_page(page).run()
    return at


def test_unreachable_trainer_is_a_message_not_a_traceback(app_env, monkeypatch):
    monkeypatch.setenv("SKYSIFT_APP_USER", "alice")
    at = run()
    assert not at.exception
    assert len(at.error) == 1
    assert f"trainer at {app_env['SKYSIFT_TRAINER_ADDRESS']} is unreachable" in at.error[0].value


def test_unreachable_mlflow_is_a_message_not_a_traceback(app_env, monkeypatch):
    monkeypatch.setenv("SKYSIFT_APP_USER", "alice")
    at = run("views/rounds.py")
    assert not at.exception
    assert f"MLflow tracking server {app_env['SKYSIFT_MLFLOW_TRACKING_URI']} is not reachable" in at.error[0].value


def test_run_a_round_now_with_the_trainer_down_is_a_message(app_env, monkeypatch):
    monkeypatch.setenv("SKYSIFT_APP_USER", "alice")
    at = run("views/rounds.py")
    next(b for b in at.button if b.label == "Run a round now").click().run()
    assert not at.exception
    assert any(e.value.startswith(f"Cannot run a round: the trainer at {app_env['SKYSIFT_TRAINER_ADDRESS']} is "
                                  "unreachable") for e in at.error), [e.value for e in at.error]


def test_datasets_page_says_the_trainer_is_unreachable(app_env, monkeypatch):
    monkeypatch.setenv("SKYSIFT_APP_USER", "alice")
    at = run("views/datasets.py")
    assert not at.exception
    assert "Cannot list datasets from the trainer" in at.error[0].value


def test_labelling_needs_a_name_first(app_env):
    at = run()
    assert not at.exception and not at.error
    assert "Give your name" in at.info[0].value


def test_cluster_without_login_shows_only_the_refusal(app_env, monkeypatch):
    monkeypatch.setenv("SKYSIFT_APP_CLUSTER", "true")
    monkeypatch.setenv("SKYSIFT_APP_USER", "alice")
    at = run()
    assert [e.value for e in at.error] == [
        ("The app will not start: SKYSIFT_APP_CLUSTER is set but no login is configured: set SKYSIFT_APP_PASSWORD "
         "(environment or secret file) or an [auth] section for OIDC in .streamlit/secrets.toml")]
    assert not at.title  # no page ran


def test_cluster_with_an_incomplete_oidc_section_refuses_to_start(app_env, monkeypatch):
    monkeypatch.setenv("SKYSIFT_APP_CLUSTER", "true")
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.secrets["auth"] = {"redirect_uri": "http://127.0.0.1:8501/oauth2callback", "cookie_secret": "c" * 32,
                          "client_id": "skysift"}
    at.run()
    assert not at.exception
    assert [e.value for e in at.error] == [
        "The app will not start: the [auth] section of .streamlit/secrets.toml lacks client_secret, "
        "server_metadata_url"]
    assert not at.button  # no "Log in" that could only fail


def test_wrong_password_is_refused(app_env, monkeypatch):
    monkeypatch.setenv("SKYSIFT_APP_CLUSTER", "true")
    monkeypatch.setenv("SKYSIFT_APP_PASSWORD", "correct horse")
    at = run()
    at.text_input[0].input("bob")
    at.text_input[1].input("wrong")
    at.button[0].click().run()
    assert [e.value for e in at.error] == ["Wrong password."]
    assert "labeller" not in at.session_state


def test_right_password_signs_the_labeller_in(app_env, monkeypatch):
    monkeypatch.setenv("SKYSIFT_APP_CLUSTER", "true")
    monkeypatch.setenv("SKYSIFT_APP_PASSWORD", "correct horse")
    at = run()
    at.text_input[0].input("bob")
    at.text_input[1].input("correct horse")
    at.button[0].click().run()
    assert at.session_state.labeller == "bob"
    assert [s.label for s in at.sidebar.selectbox][:2] == ["Experiment", "Model tag"]  # the label page ran
