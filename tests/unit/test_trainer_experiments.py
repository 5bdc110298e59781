"""Oracle experiments on a real labelled feature table (SNAD real/bogus): curves, pairing, summaries, CLI."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from skysift.cli import app
from skysift.errors import InvalidArgument
from skysift.trainer import experiments as ex
from tests.trainer_data import SNAD_CSV


@pytest.fixture(scope="module")
def snad():
    data = ex.from_table(SNAD_CSV, label_column="label", id_column="oid")
    keep = np.random.default_rng(0).permutation(len(data.y))[:400]  # a fixed random subset keeps it fast
    return ex.LabelledSet("snad subset", data.X.iloc[keep].reset_index(drop=True), data.y[keep], data.ids[keep],
                          data.classes)


def test_table_loader_uses_numeric_columns_except_id_and_label(snad):
    assert "oid" not in snad.X.columns and "label" not in snad.X.columns
    assert snad.X.shape[1] == 54 and set(np.unique(snad.y)) == {0, 1}


def test_curve_grows_by_the_batch_size_up_to_max_labels(snad):
    points = ex.simulate(snad, ex.Config("uncertainty", initial_batch_size=20, batch_size=15), seed=0, max_labels=80)
    assert [p["n_labels"] for p in points] == [20, 35, 50, 65, 80]
    assert all(0 <= p["f1"] <= 1 for p in points)


def test_strategies_start_from_the_same_initial_batch_for_a_seed(snad):
    a = ex.simulate(snad, ex.Config("random", 20, 10), seed=3, max_labels=20)
    b = ex.simulate(snad, ex.Config("entropy", 20, 10), seed=3, max_labels=20)
    assert a[0]["f1"] == b[0]["f1"] and a[0]["train_positive_fraction"] == b[0]["train_positive_fraction"]


def test_summary_has_mean_and_spread_per_number_of_labels(snad):
    points = ex.run(snad, ex.grid(["random", "margin"], [20], [20]), seeds=[0, 1, 2], max_labels=60)
    summary = ex.summarise(points)
    row = summary[(summary["config"].str.startswith("margin")) & (summary["n_labels"] == 40)].iloc[0]
    f1 = points[(points["strategy"] == "margin") & (points["n_labels"] == 40)]["f1"]
    assert row["f1_mean"] == pytest.approx(f1.mean()) and row["f1_std"] == pytest.approx(f1.std())
    assert row["f1_count"] == 3
    auc = ex.area_under_curves(points)
    assert list(auc.columns[:4]) == ["config", "mean_f1", "std_f1", "seeds"] and len(auc) == 2
    assert "best by mean held-out f1" in ex.verdict(auc)


def test_max_labels_beyond_the_pool_is_refused(snad):
    with pytest.raises(InvalidArgument, match="exceeds the pool"):
        ex.run(snad, ex.grid(["random"]), seeds=[0], max_labels=1000)


def test_cli_experiment_on_a_table_saves_plot_and_csvs(tmp_path, snad):
    table = tmp_path / "snad.csv"
    pd.concat([snad.X, pd.Series(snad.y, name="label")], axis=1).to_csv(table, index=False)
    result = CliRunner().invoke(app, ["experiment", "--table", str(table), "--strategies", "random,uncertainty",
                                      "--seeds", "2", "--initial-batch-size", "20", "--batch-size", "20",
                                      "--max-labels", "60", "--out", str(tmp_path / "out"), "--name", "t",
                                      "--no-mlflow"])
    assert result.exit_code == 0, result.output
    assert "best by mean held-out f1" in result.output
    curves = pd.read_csv(tmp_path / "out" / "t_curves.csv")
    assert set(curves["n_labels"]) == {20, 40, 60} and (tmp_path / "out" / "t_curves.png").stat().st_size > 1000


def test_verdict_names_strategies_that_queried_the_same_alerts(snad):
    points = ex.run(snad, ex.grid(["uncertainty", "entropy"], [20], [20]), seeds=[0], max_labels=60)
    text = ex.verdict(ex.area_under_curves(points), points=points)
    assert "identical curves (same queries every round): entropy init=20" in text
