"""Oracle experiments on a real labelled feature table (SNAD real/bogus): curves, the first batch, pairing,
labels saved, the clamp, and the CLI."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from skysift.cli import app
from skysift.errors import InvalidArgument
from skysift.trainer import comparison
from skysift.trainer import experiments as ex
from skysift.trainer.experiments import Config
from tests.trainer_data import SNAD_CSV


@pytest.fixture(scope="module")
def snad():
    data = ex.from_table(SNAD_CSV, label_column="label", id_column="oid")
    keep = np.random.default_rng(0).permutation(len(data.y))[:200]  # a fixed random subset keeps it fast
    return ex.LabelledSet("snad subset", data.X.iloc[keep].reset_index(drop=True), data.y[keep], data.ids[keep],
                          data.classes)


def test_table_loader_uses_numeric_and_boolean_columns_except_id_and_label(tmp_path, snad):
    assert "oid" not in snad.X.columns and "label" not in snad.X.columns
    assert snad.X.shape[1] == 54 and set(np.unique(snad.y)) == {0, 1}
    table = tmp_path / "t.csv"
    pd.DataFrame({"id": ["a", "b", "c"], "label": [True, False, True], "CV": [True, False, False],
                  "x": [1.0, 2.0, 3.0], "note": ["p", "q", "r"]}).to_csv(table, index=False)
    data = ex.from_table(table, "label", "id")
    assert list(data.X.columns) == ["CV", "x"] and data.X["CV"].tolist() == [1.0, 0.0, 0.0]
    assert data.y.tolist() == [1, 0, 1] and "note" in data.notes[0]


def test_curve_grows_by_the_batch_size_up_to_max_labels(snad):
    points = ex.simulate(snad, ex.Config("uncertainty", initial_batch_size=20, batch_size=15), seed=0, max_labels=80)
    assert [p["n_labels"] for p in points] == [20, 35, 50, 65, 80]
    assert all(0 <= p["f1"] <= 1 and 0 <= p["f1_negative"] <= 1 and 0 <= p["pr_auc"] <= 1 for p in points)
    assert all(p["f1_macro"] == pytest.approx((p["f1"] + p["f1_negative"]) / 2) for p in points)


def test_a_growing_batch_reaches_a_long_budget_in_fewer_rounds_and_reads_back(snad):
    config = ex.grid(["random"], [20], [10], batch_growth=0.25)[0]
    points = ex.simulate(snad, config, seed=0, max_labels=120)
    assert [p["n_labels"] for p in points] == [20, 30, 40, 50, 62, 77, 96, 120]  # max(10, 25 % of the labels so far)
    assert Config.of_points(pd.DataFrame(points)) == {config.label: config} and "grow=0.25" in config.label
    old = pd.DataFrame(points).drop(columns="batch_growth")  # points saved before the field existed
    assert list(Config.of_points(old).values())[0].batch_growth == 0.0
    with pytest.raises(InvalidArgument, match="batch growth"):
        ex.grid(["random"], batch_growth=2.0)


def test_the_first_batch_is_as_class_balanced_as_chance_allows(snad):
    """Positives in a random first batch of 30 follow the hypergeometric law over seeds; the old first batch
    (the split's hash order) varied 3-4 times more than that."""
    counts = []
    for seed in range(300):
        held, pool = ex.split(snad, seed, 0.3)
        batch = ex.first_batch(snad, pool, 30, seed)
        assert len(set(batch)) == 30 and not set(batch) & set(held)
        counts.append(int(snad.y[batch].sum()))
    n_pool, k = len(pool), int(snad.y[pool].sum())
    p = k / n_pool
    expected_var = 30 * p * (1 - p) * (n_pool - 30) / (n_pool - 1)
    assert np.mean(counts) == pytest.approx(30 * p, rel=0.06)
    assert 0.75 < np.var(counts) / expected_var < 1.3


def test_strategies_start_from_the_same_first_batch_for_a_seed(snad):
    a = ex.simulate(snad, ex.Config("random", 20, 10), seed=3, max_labels=20)
    b = ex.simulate(snad, ex.Config("entropy", 20, 10), seed=3, max_labels=20)
    assert a[0]["f1"] == b[0]["f1"] and a[0]["train_positive_fraction"] == b[0]["train_positive_fraction"]


def test_paired_test_on_a_constructed_case():
    better = comparison.paired_test([0.03, 0.01, 0.02, 0.05, 0.04, 0.02, 0.01, 0.03, 0.06, 0.02])
    assert better["wins"] == 10 and better["losses"] == 0
    assert better["p_value"] == pytest.approx(2 / 2**10)  # exact two-sided signed-rank p, every sign positive
    assert 0.01 < better["ci_low"] < better["mean_diff"] < better["ci_high"] < 0.05
    assert comparison.verdict_word(better) == "better than random"
    mixed = comparison.paired_test([0.02, -0.02, 0.01, -0.01, 0.03, -0.03])
    assert mixed["p_value"] > 0.5 and mixed["ci_low"] < 0 < mixed["ci_high"]
    assert comparison.verdict_word(mixed) == "no significant difference"
    assert comparison.verdict_word(comparison.paired_test([0.1])) == "one seed: no test"


def test_report_pairs_each_strategy_with_random_and_counts_labels_saved(snad):
    results = ex.run(snad, ex.grid(["random", "margin"], [20], [20]), seeds=[0, 1, 2], max_labels=60)
    points = results.points
    summary = comparison.summarise(points)
    row = summary[(summary["config"].str.startswith("margin")) & (summary["n_labels"] == 40)].iloc[0]
    f1 = points[(points["strategy"] == "margin") & (points["n_labels"] == 40)]["f1"]
    assert row["f1_mean"] == pytest.approx(f1.mean()) and row["f1_count"] == 3
    report = comparison.report(points, results.ceiling, budget=40).set_index("config")
    margin = report.loc[next(c for c in report.index if c.startswith("margin"))]
    per_seed = points.groupby(["strategy", "seed"])["f1"].mean()
    assert margin["mean_diff"] == pytest.approx((per_seed["margin"] - per_seed["random"]).mean())
    random_final = summary[summary["config"].str.startswith("random") & (summary["n_labels"] == 60)]["f1_mean"].iloc[0]
    margin_curve = summary[summary["config"].str.startswith("margin")].set_index("n_labels")["f1_mean"]
    reached = margin_curve[margin_curve >= random_final]
    assert margin["target_f1"] == pytest.approx(random_final)
    assert margin["labels_to_target"] == (reached.index.min() if len(reached) else pytest.approx(np.nan, nan_ok=True))
    assert margin["f1_ratio_at_budget"] == pytest.approx(margin_curve[40] / summary[
        summary["config"].str.startswith("random") & (summary["n_labels"] == 40)]["f1_mean"].iloc[0])
    assert results.ceiling["n_labels"].tolist() == [len(ex.split(snad, s, 0.3)[1]) for s in (0, 1, 2)]


def test_max_labels_beyond_the_pool_is_clamped_and_said(snad):
    small = ex.LabelledSet("small", snad.X.iloc[:60], snad.y[:60], snad.ids[:60], snad.classes)
    results = ex.run(small, ex.grid(["committee"], [20], [10]), seeds=[0], max_labels=1000)
    assert results.max_labels == 42 and "clamped to 42" in results.notes[-1]
    assert results.points["n_labels"].max() == 42  # the committee's last round has an empty pool: no crash


def test_points_are_saved_as_each_curve_finishes(tmp_path, snad):
    saved = []
    checkpoint = tmp_path / "points.csv"
    ex.run(snad, ex.grid(["random", "uncertainty"], [20], [20]), seeds=[0, 1], max_labels=40, checkpoint=checkpoint,
           progress=lambda _: saved.append(len(pd.read_csv(checkpoint))))
    assert saved == [2, 4, 6, 8]


def test_verdict_names_strategies_that_queried_the_same_alerts(snad):
    results = ex.run(snad, ex.grid(["uncertainty", "entropy"], [20], [20]), seeds=[0], max_labels=60)
    text = comparison.verdict(comparison.report(results.points, results.ceiling), results.points, results.ceiling)
    assert "identical curves (same queries every round): entropy init=20" in text


def test_cli_on_a_table_with_a_boolean_column_prints_labels_to_target_and_the_paired_verdict(tmp_path, snad):
    table = tmp_path / "snad.csv"
    frame = pd.concat([snad.X, pd.Series(snad.y, name="label")], axis=1)
    frame.insert(0, "id", [f"ZTF{i}" for i in range(len(frame))])
    frame["flagged"] = snad.X.iloc[:, 0] > snad.X.iloc[:, 0].median()
    frame.to_csv(table, index=False)
    result = CliRunner().invoke(app, ["experiment", "--table", str(table), "--label-column", "label", "--id-column",
                                      "id", "--strategies", "random,default", "--seeds", "3",
                                      "--initial-batch-size", "20", "--batch-size", "20", "--max-labels", "60",
                                      "--budget", "40", "--out", str(tmp_path / "out"), "--name", "t", "--no-mlflow"])
    assert result.exit_code == 0, result.output
    assert "55 features" in result.output  # 54 numeric columns and the boolean one
    assert "default init=20 +20 lr=0.1 cw=balanced t=0.5 vs random:" in result.output
    assert "random's final f1" in result.output and "ratio at 40 labels" in result.output
    assert "better on" in result.output and "±nan" not in result.output
    report = pd.read_csv(tmp_path / "out" / "t_report.csv")
    assert {"labels_to_target", "share_of_random_labels", "f1_ratio_at_budget", "p_value", "ci_low"} <= set(report.columns)
    curves = pd.read_csv(tmp_path / "out" / "t_curves.csv")
    assert set(curves["n_labels"]) == {20, 40, 60} and (tmp_path / "out" / "t_curves.png").stat().st_size > 1000


def test_cli_with_one_seed_prints_no_nan_spread(tmp_path, snad):
    table = tmp_path / "snad.csv"
    pd.concat([snad.X, pd.Series(snad.y, name="label")], axis=1).to_csv(table, index=False)
    result = CliRunner().invoke(app, ["experiment", "--table", str(table), "--strategies", "random,uncertainty",
                                      "--seeds", "1", "--initial-batch-size", "20", "--batch-size", "20",
                                      "--max-labels", "40", "--out", str(tmp_path / "out"), "--no-mlflow"])
    assert result.exit_code == 0, result.output
    assert "nan" not in result.output.split("best by mean")[1] and "one seed: no test" in result.output


def test_fink_alerts_labelled_by_variable_star_catalogue_position_agree_with_simbad():
    """The position oracle (VSX/GCVS within 1.5 arcsec) on real Fink alerts: both classes, no catalogue column
    among the features, and the alerts it calls known variable stars are galactic by SIMBAD, a separate oracle."""
    from tests.trainer_data import LABELS_CSV, oracle_table

    data = ex.from_variable_star_catalogues([LABELS_CSV.parent])
    assert not [c for c in data.X.columns if c.startswith("varstar")] and "ra" in data.X.columns
    positives = set(data.ids[data.y == 1])
    assert 50 <= len(positives) <= len(data.y) - 50
    simbad = oracle_table().set_index("candid")["label"]
    typed = [simbad[c] for c in positives if simbad.get(c, "skip") != "skip"]
    assert len(typed) >= 40 and typed.count("galactic") >= 0.95 * len(typed)


def test_the_same_alerts_and_labels_with_feature_set_1_and_2_for_a_paired_comparison():
    """The v1 vs v2 evidence pairs curves by seed, which holds only if both versions label the same alerts alike
    (same ids, same targets: the same splits); the columns are each version's own."""
    from skysift.features import sets
    from tests.trainer_data import LABELS_CSV

    v1, v2 = (ex.from_alerts([LABELS_CSV.parent], LABELS_CSV, "galactic", version) for version in ("1", "2"))
    assert (v1.feature_set_version, v2.feature_set_version) == ("1", "2")
    assert list(v1.X.columns) == sets.feature_set("1").columns and list(v2.X.columns) == sets.feature_set("2").columns
    assert list(v1.ids) == list(v2.ids) and (v1.y == v2.y).all() and len(v1.y) > 300
    with pytest.raises(InvalidArgument, match="unknown feature set version '3'"):
        ex.from_alerts([LABELS_CSV.parent], LABELS_CSV, "galactic", "3")
