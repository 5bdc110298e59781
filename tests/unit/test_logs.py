"""No secret reaches a log line, whichever library writes it (the Slack webhook's path was logged by urllib3 at
DEBUG before the log setup quieted client libraries and redacted known secrets)."""

from __future__ import annotations

import json
import logging
import uuid

import pytest
from pydantic import SecretStr

from skysift import logs
from skysift.inference.settings import SlackSettings
from skysift.inference.sinks.slack import SlackSink
from tests.fakes.slack import FakeSlack


@pytest.fixture
def restore_logging():
    root = logging.getLogger()
    saved = root.handlers[:], root.level, {n: logging.getLogger(n).level for n in logs.QUIET_LIBRARIES}
    own = {n: (logging.getLogger(n).handlers[:], logging.getLogger(n).propagate) for n in logs.OWN_HANDLER_LIBRARIES}
    yield
    root.handlers[:], root.level = saved[0], saved[1]
    for name, level in saved[2].items():
        logging.getLogger(name).setLevel(level)
    for name, (handlers, propagate) in own.items():
        logging.getLogger(name).handlers[:], logging.getLogger(name).propagate = handlers, propagate


def test_a_slack_webhook_posted_at_debug_leaves_no_trace_of_its_secret_path(monkeypatch, capsys, restore_logging):
    secret_path = f"/services/T0/B0/{uuid.uuid4().hex}"
    slack = FakeSlack(webhook_path=secret_path).start()
    try:
        monkeypatch.setenv("SKYSIFT_SLACK_WEBHOOK_URL", slack.webhook_url)
        monkeypatch.setenv("SKYSIFT_SECRETS_DIR", "/nonexistent")
        logs.setup("DEBUG")
        logging.getLogger("skysift.test").debug("debug lines are written")
        SlackSink(SlackSettings(webhook_url=SecretStr(slack.webhook_url)), attempts=1)._webhook({"text": "hello"})
    finally:
        slack.stop()
    lines = capsys.readouterr().err
    assert slack.messages == [{"text": "hello"}]  # the post really went out
    assert "debug lines are written" in lines
    assert secret_path.rsplit("/", 1)[1] not in lines


def test_a_library_logging_a_secret_at_debug_gets_it_redacted(monkeypatch, capsys, restore_logging, tmp_path):
    token, mounted = f"tok-{uuid.uuid4().hex}", f"pw-{uuid.uuid4().hex}"
    (tmp_path / "SKYSIFT_KAFKA_SASL_PASSWORD").write_text(mounted + "\n")
    monkeypatch.setenv("SKYSIFT_SECRETS_DIR", str(tmp_path))
    monkeypatch.setenv("SKYSIFT_SKYPORTAL_TOKEN", token)
    logs.setup("DEBUG")
    chatty = logging.getLogger("some.client.library")
    chatty.debug("Authorization: token %s", token)
    chatty.debug("sasl %s", mounted, extra={"password": mounted})
    try:
        raise RuntimeError(f"failed with {token}")
    except RuntimeError:
        chatty.exception("boom")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 3 and all(json.loads(line) for line in lines)  # still JSON lines
    assert token not in "\n".join(lines) and mounted not in "\n".join(lines)
    assert "Authorization: token ***" in lines[0]


def test_a_commands_log_redacts_mlflow_lines_too(monkeypatch, capfd, restore_logging):
    """MLflow writes through a handler of its own (set up when it is imported, not propagating); a command's log set-up
    (``skysift`` runs ``setup_cli`` before any command) routes it through the redaction. capfd, not capsys: MLflow's
    handler holds the stderr of the moment it was made."""
    import mlflow  # noqa: F401 - the import installs MLflow's own handler when nothing stops it

    token = f"tok-{uuid.uuid4().hex}"
    monkeypatch.setenv("SKYSIFT_SECRETS_DIR", "/nonexistent")
    monkeypatch.setenv("SKYSIFT_LASAIR_TOKEN", token)
    monkeypatch.setenv("SKYSIFT_LOG_LEVEL", "DEBUG")
    logs.setup_cli()
    logging.getLogger("mlflow.tracking").warning("registry answered for token %s", token)
    logging.getLogger("skysift.x").warning("%s and a missing argument: %s", token)  # the handler printed it raw
    err = capfd.readouterr().err
    assert "registry answered for token ***" in err.splitlines()  # a bare line, as a command prints it
    assert token not in err and "a log call whose arguments do not fit" in err, err


def test_the_apps_log_redacts_streamlits_lines_even_of_loggers_made_later(monkeypatch, capfd, restore_logging):
    """Streamlit gives each of its loggers a console handler of its own and stops it propagating, and its web server
    installs its own after start-up: `skysift app`'s set-up routes Streamlit's, made before or after, through the
    redaction, and redacts a handler's installed later too (tests/e2e/test_app_log.py runs the process)."""
    import sys

    from streamlit import logger as streamlit_logger

    made = streamlit_logger.get_logger("streamlit.made_before")
    monkeypatch.setattr(streamlit_logger, "setup_formatter", streamlit_logger.setup_formatter)  # restored after
    monkeypatch.setattr(logging, "_logRecordFactory", logging.getLogRecordFactory())
    for logger in streamlit_logger._loggers.values():  # each logger's handlers and propagation, restored after
        monkeypatch.setattr(logger, "handlers", logger.handlers[:])
        monkeypatch.setattr(logger, "propagate", logger.propagate)
    token = f"tok-{uuid.uuid4().hex}"
    monkeypatch.setenv("SKYSIFT_SECRETS_DIR", "/nonexistent")
    monkeypatch.setenv("SKYSIFT_APP_PASSWORD", token)
    logs.setup_app("INFO", json_lines=False)
    later = streamlit_logger.get_logger(f"streamlit.made_after_{uuid.uuid4().hex}")
    server = logging.getLogger(f"uvicorn.test_{uuid.uuid4().hex}")  # as uvicorn's dictConfig sets its loggers up
    server.addHandler(logging.StreamHandler(sys.stderr))
    server.propagate = False
    made.warning("before: %s", token)
    later.error("after: %s", token)
    server.warning("server: %s", token)
    try:
        raise RuntimeError(f"failed with {token}")
    except RuntimeError:
        server.exception("trace")
    server.warning("%s and a missing argument: %s", token)  # a malformed call must not raise where it is made
    err = capfd.readouterr().err
    assert token not in err and "before: ***" in err and "after: ***" in err and "server: ***" in err, err
    assert "RuntimeError: failed with ***" in err
    streamlit_logger._loggers.pop(later.name)


def test_every_secret_setting_is_named_as_a_secret():
    """The redaction finds secrets by name: a new ``SecretStr`` setting named otherwise would escape it."""
    import importlib
    import pkgutil

    from pydantic_settings import BaseSettings

    import skysift

    for module in pkgutil.walk_packages(skysift.__path__, "skysift."):
        if module.name.endswith((".settings", ".config")):
            importlib.import_module(module.name)

    def subclasses(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from subclasses(sub)

    seen = []
    for cls in {c for c in subclasses(BaseSettings) if c.__module__.startswith("skysift.")}:
        prefix = cls.model_config.get("env_prefix", "")
        for name, field in cls.model_fields.items():
            if "SecretStr" in str(field.annotation):
                seen.append(prefix + name.upper())
    assert len(seen) >= 8
    assert [name for name in seen if not logs.SECRET_NAME.match(name)] == []


def test_short_values_and_ordinary_variables_are_not_taken_for_secrets(monkeypatch):
    monkeypatch.setenv("SKYSIFT_SECRETS_DIR", "/nonexistent")
    env = {"SKYSIFT_APP_PASSWORD": "abc", "SKYSIFT_STORE_URL": "s3://bucket/prefix",
           "SKYSIFT_SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T1/B1/zzzzzz"}
    assert logs.secret_values(env) == ["/services/T1/B1/zzzzzz", "https://hooks.slack.com/services/T1/B1/zzzzzz"]
