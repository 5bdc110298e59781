"""The app's own process log: run as deployed (`skysift app`), Streamlit's lines pass the services' redaction."""

from __future__ import annotations

import os
import time
import uuid

from tests.e2e.browser import MARKS, start_streamlit

pytestmark = MARKS

FAILING_PAGE = """import os
import streamlit as st

st.title("about to fail")
raise RuntimeError("the webhook refused " + os.environ["SKYSIFT_SLACK_WEBHOOK_URL"])
"""


def test_a_secret_in_the_apps_environment_never_reaches_its_log(page, tmp_path):
    """A page failing with a secret in its exception: Streamlit logs the traceback through a handler of its own
    (its loggers do not propagate), which wrote the secret as it was; `skysift app` routes it to the redaction."""
    secret = f"https://hooks.slack.com/services/T0/B0/{uuid.uuid4().hex}"
    script = tmp_path / "failing.py"
    script.write_text(FAILING_PAGE)
    env = {**os.environ, "SKYSIFT_SLACK_WEBHOOK_URL": secret, "SKYSIFT_SECRETS_DIR": str(tmp_path / "no-secrets"),
           "SKYSIFT_LOG_JSON": "false"}
    app = start_streamlit(env, tmp_path, script=script)
    try:
        page.goto(f"http://127.0.0.1:{app.port}")
        page.get_by_text("about to fail").wait_for(timeout=60_000)
        deadline = time.monotonic() + 60
        while "Uncaught app execution" not in app.log_path.read_text() and time.monotonic() < deadline:
            time.sleep(0.5)
    finally:
        app.stop()
    log = app.log_path.read_text()
    assert "Uncaught app execution" in log and "the webhook refused ***" in log, log
    assert secret not in log and secret.rsplit("/", 3)[-1] not in log
