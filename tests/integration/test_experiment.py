"""`skysift experiment` on the real Fink-labelled alerts with the SIMBAD oracle, logged to a real MLflow server."""

from __future__ import annotations

import pandas as pd
import pytest
from typer.testing import CliRunner

from skysift.cli import app
from tests.trainer_data import DATA, LABELS_CSV

ALERTS = DATA / "alerts" / "ztf" / "fink_labeled"


@pytest.fixture(scope="module")
def ran(mlflow_server, tmp_path_factory):
    out = tmp_path_factory.mktemp("experiment")
    env = {**mlflow_server.env, "SKYSIFT_STORE_URL": str(out / "store")}
    result = CliRunner().invoke(app, [
        "experiment", "--alerts", str(ALERTS), "--oracle", str(LABELS_CSV), "--strategies", "random,committee",
        "--seeds", "2", "--max-labels", "50", "--out", str(out), "--name", "fink",
    ], env=env)
    assert result.exit_code == 0, result.output
    return result.output, out, mlflow_server.env["SKYSIFT_MLFLOW_TRACKING_URI"]


def test_prints_the_labelled_set_and_an_honest_verdict(ran):
    output, _, _ = ran
    assert "359 labelled (galactic 183, not_galactic 176)" in output
    assert "best by mean held-out f1 over the curve" in output and "random init=30" in output
    assert "committee init=30 +10 lr=0.1 cw=balanced t=0.5 vs random: " in output and "paired by seed" in output
    # what the oracle leaves out is counted, not silently dropped
    assert "note: oracle: " in output and "types that say nothing of the class: Unknown (" in output
    assert "types not mapped to a class: " in output


def test_saves_curves_with_mean_and_spread_for_each_strategy(ran):
    _, out, _ = ran
    curves = pd.read_csv(out / "fink_curves.csv")
    assert {"f1_mean", "f1_std", "roc_auc_mean", "accuracy_mean"} <= set(curves.columns)
    assert set(curves["n_labels"]) == {30, 40, 50} and curves["config"].nunique() == 2
    assert (out / "fink_curves.png").stat().st_size > 1000


def test_logs_a_parent_run_and_a_curve_per_configuration_to_mlflow(ran, mlflow_prefix):
    import mlflow
    from mlflow import MlflowClient

    _, _, uri = ran
    mlflow.set_tracking_uri(uri)
    client = MlflowClient()
    exp = client.get_experiment_by_name(f"{mlflow_prefix}/galactic/experiment-fink")
    runs = client.search_runs([exp.experiment_id])
    parent = next(r for r in runs if r.info.run_name == "experiment_fink")
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == 2
    history = client.get_metric_history(children[0].info.run_id, "f1_mean")
    assert sorted(m.step for m in history) == [30, 40, 50]
    assert {"learning_curves.png", "learning_curves.csv", "verdict.txt"} <= {a.path for a in client.list_artifacts(parent.info.run_id)}
