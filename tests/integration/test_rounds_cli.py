"""`skysift round --in-process` on a local store with real alerts and a real MLflow server."""

from __future__ import annotations

from typer.testing import CliRunner

from skysift.cli import app
from skysift.store import open_store
from tests.trainer_data import write_fink_batches


def test_round_in_process_queues_then_reports_unchanged(local_settings, mlflow_server, monkeypatch):
    for name, value in mlflow_server.env.items():
        monkeypatch.setenv(name, value)
    write_fink_batches(open_store(settings=local_settings))
    runner = CliRunner()
    args = ["round", "--in-process", "--experiment", "cli", "--initial-batch-size", "15", "--seed", "2"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "round 0 created (random): initial random batch" in first.output and "queue: 15 alerts" in first.output
    second = runner.invoke(app, args)
    assert second.exit_code == 0 and "round 0 unchanged" in second.output


def test_round_with_a_bad_parameter_fails_clearly(local_settings):
    result = CliRunner().invoke(app, ["round", "--in-process", "--param", "depth=3"])
    assert result.exit_code == 2 and "unknown model parameter 'depth'" in result.output
