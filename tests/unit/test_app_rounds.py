import pandas as pd
import pytest

from skysift.app.rounds import (
    ExperimentRef,
    class_balance,
    differing,
    learning_curves,
    round_table,
    tidy_runs,
)

REFS = [ExperimentRef("1", "skysift/galactic/unc-s1", "galactic", "unc-s1"),
        ExperimentRef("2", "skysift/galactic/unc-s2", "galactic", "unc-s2"),
        ExperimentRef("3", "skysift/galactic/rnd-s1", "galactic", "rnd-s1")]


def search_runs_frame() -> pd.DataFrame:
    """The shape mlflow.search_runs returns: params as strings, metrics as floats, prefixed column names."""
    rows = []
    for exp_id, strategy, f1s in (("1", "uncertainty", [0.5, 0.7, 0.8]), ("2", "uncertainty", [0.6, 0.7, 0.9]),
                                  ("3", "random", [0.5, 0.55, 0.6])):
        for rnd, f1 in enumerate(f1s):
            rows.append({"run_id": f"{exp_id}-{rnd}", "experiment_id": exp_id, "start_time": pd.Timestamp(2025, 1, 1, rnd),
                         "tags.mlflow.runName": f"round_{rnd:03d}_{strategy}", "params.round": str(rnd),
                         "params.strategy": strategy, "params.n_train": str(30 + 10 * rnd), "params.seed": "1",
                         "metrics.holdout_f1": f1, "metrics.train_n_positive": 10.0 + rnd,
                         "metrics.train_n_negative": 20.0 + 9 * rnd})
    return pd.DataFrame(rows).iloc[::-1]  # MLflow lists newest first


def test_runs_are_tidied_typed_and_in_round_order():
    runs = tidy_runs(search_runs_frame(), REFS)
    first = runs[runs["experiment"] == "unc-s1"]
    assert list(first["round"]) == [0, 1, 2] and list(first["n_train"]) == [30, 40, 50]
    assert "holdout_f1" in runs.columns and "metrics.holdout_f1" not in runs.columns


def test_round_table_names_metrics_plainly():
    table = round_table(tidy_runs(search_runs_frame(), REFS))
    assert {"round", "strategy", "n_train", "f1", "train_n_positive"} <= set(table.columns)


def test_learning_curves_average_strategies_with_their_spread():
    curves = learning_curves(tidy_runs(search_runs_frame(), REFS), "f1")
    unc = curves[curves["strategy"] == "uncertainty"].set_index("n_train")
    assert unc.loc[50.0, "mean"] == pytest.approx(0.85)
    assert (unc.loc[50.0, "min"], unc.loc[50.0, "max"], unc.loc[50.0, "n"]) == (0.8, 0.9, 2)
    rnd = curves[curves["strategy"] == "random"]
    assert list(rnd["n"]) == [1, 1, 1] and list(rnd["std"]) == [0.0, 0.0, 0.0]


def test_learning_curves_of_an_unlogged_metric_are_empty():
    assert learning_curves(tidy_runs(search_runs_frame(), REFS), "roc_auc").empty


def test_class_balance_uses_the_tag_class_names():
    run = tidy_runs(search_runs_frame(), REFS).iloc[2]
    balance = class_balance(run, ("not_galactic", "galactic"))
    assert balance.to_dict("records") == [{"class": "not_galactic", "count": 38}, {"class": "galactic", "count": 12}]


def test_two_runs_side_by_side_show_only_what_differs():
    runs = tidy_runs(search_runs_frame(), REFS)
    a, b = runs[runs["run_id"] == "1-2"].iloc[0], runs[runs["run_id"] == "3-2"].iloc[0]
    diff = differing(a, b).set_index("field")
    assert diff.loc["strategy"].tolist() == ["uncertainty", "random"]
    assert diff.loc["holdout_f1"].tolist() == ["0.8", "0.6"]
    assert "n_train" not in diff.index and "seed" not in diff.index
    assert "n_train" in differing(a, b, only_different=False)["field"].tolist()
