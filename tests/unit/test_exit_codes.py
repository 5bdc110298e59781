"""One exit-code convention for every command: 2 when the command was given something wrong (arguments,
configuration, a name that does not exist), 1 when it failed doing it (a service, store or broker down)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from skysift.cli import app
from tests.servers import free_port


@pytest.fixture
def env(tmp_path, monkeypatch, empty_mlflow_uri):
    monkeypatch.setenv("SKYSIFT_STORE_URL", str(tmp_path / "store"))
    monkeypatch.setenv("SKYSIFT_MLFLOW_TRACKING_URI", empty_mlflow_uri)
    down = f"127.0.0.1:{free_port()}"  # nothing listens there
    for service in ("trainer", "inference", "ingest"):
        monkeypatch.setenv(f"SKYSIFT_{service.upper()}_ADDRESS", down)
    return tmp_path


@pytest.mark.parametrize("args,code", [
    (["round", "--in-process", "--experiment", "../etc"], 2),  # InvalidArgument
    (["dataset", "show", "nope-1"], 2),  # NotFound: a name that does not exist
    (["round", "--experiment", "vra"], 1),  # the trainer service is unreachable
    (["score", "--candid", "1"], 1),  # the inference service is unreachable
    (["poll"], 1),  # the ingest service is unreachable
], ids=["invalid", "not-found", "trainer-down", "inference-down", "ingest-down"])
def test_every_command_exits_2_for_bad_input_and_1_for_a_runtime_failure(env, args, code):
    result = CliRunner().invoke(app, args)
    assert result.exit_code == code, result.output
    assert "error:" in result.output and "Traceback" not in result.output
