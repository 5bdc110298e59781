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
from skysift.modeltags import get_tag, tags

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


def test_wilson_interval_matches_the_textbook_values_and_stays_in_zero_one():
    from skysift.app.rounds import wilson

    assert wilson(4, 6) == pytest.approx((0.300, 0.903), abs=1e-3)  # Newcombe (1998), 95 %
    low, high = wilson(0, 5)
    assert low == 0.0 and 0 < high < 0.5
    assert wilson(5, 5)[1] == pytest.approx(1.0) and wilson(0, 0) is None


def test_metric_intervals_say_how_many_alerts_each_metric_rests_on_and_narrow_with_more():
    from skysift.app.rounds import metric_intervals

    few = metric_intervals({"tp": 2, "fp": 1, "fn": 1, "tn": 2})
    many = metric_intervals({"tp": 200, "fp": 100, "fn": 100, "tn": 200})
    assert {m: n for m, (n, _) in few.items()} == {"accuracy": 6, "precision": 3, "recall": 3, "f1": 6}
    for metric in few:
        (lo_few, hi_few), (lo_many, hi_many) = few[metric][1], many[metric][1]
        assert hi_many - lo_many < (hi_few - lo_few) / 3, metric
        assert lo_many < 0.667 < hi_many  # the value of both
    assert metric_intervals({"tp": 0, "fp": 0, "fn": 0, "tn": 4})["precision"] == (0, None)


def test_experiment_curves_read_the_summary_skysift_experiment_logs():
    from skysift.app.rounds import experiment_curves

    summary = pd.DataFrame({"config": ["random", "random", "uncertainty"], "n_labels": [10, 20, 10],
                            "f1_mean": [0.5, 0.6, 0.7], "f1_std": [0.1, None, 0.05], "f1_count": [5, 5, 5]})
    curves = experiment_curves(summary, "f1")
    assert curves[["strategy", "n_train", "mean"]].values.tolist() == [["random", 10, 0.5], ["random", 20, 0.6],
                                                                       ["uncertainty", 10, 0.7]]
    assert curves["min"].tolist() == pytest.approx([0.4, 0.6, 0.65])
    assert experiment_curves(summary, "roc_auc").empty


def test_a_perfect_f1_on_a_few_held_out_alerts_still_gets_a_wide_interval():
    """Four alerts all right prove little: the interval must not collapse to 1.00-1.00 (it did with the observed
    shares alone), and it narrows as the same perfect score rests on more alerts."""
    from skysift.app.rounds import f1_bootstrap

    few = f1_bootstrap({"tp": 2, "fp": 0, "fn": 0, "tn": 2})
    many = f1_bootstrap({"tp": 200, "fp": 0, "fn": 0, "tn": 200})
    assert few[1] == 1.0 and few[0] < 0.8
    assert many[0] > 0.97 and many[1] - many[0] < few[1] - few[0]


def test_round_0_shows_a_dash_not_none_and_every_metric_three_decimals():
    """Round 0 trains nothing and is evaluated on nothing: its metrics, their n and the class balance are missing,
    which Streamlit printed as "None" in the table."""
    from skysift.app.rounds import shown_table, with_intervals

    raw = search_runs_frame()
    raw.loc[raw["params.round"] == "0", ["metrics.holdout_f1", "metrics.train_n_positive",
                                         "metrics.train_n_negative"]] = float("nan")
    runs = tidy_runs(raw, REFS)
    counts = {r: {"tp": 3, "fp": 1, "fn": 1, "tn": 5} for r, rnd in zip(runs["run_id"], runs["round"]) if rnd > 0}
    table = with_intervals(round_table(runs), counts, champion_run="1-2")
    table["mlflow"] = None  # a sqlite store: no run has a link
    shown = shown_table(table)
    cells = shown.astype(str).to_numpy().ravel()
    assert not {"None", "nan", "<NA>", "NaN"} & set(cells), shown.to_string()
    assert "mlflow" not in shown
    assert list(shown.columns[shown.columns.get_loc("f1"):][:3]) == ["f1", "f1 n", "f1 95%"]  # F1 first, with n
    assert shown.columns.get_loc("f1") < shown.columns.get_loc("train_n_positive")
    first = shown[(shown["experiment"] == "unc-s1")].set_index("round")
    assert first.loc[0, "f1"] == first.loc[0, "f1 n"] == first.loc[0, "train_n_positive"] == "–"
    assert first.loc[2, "f1"] == f"{runs.loc[runs['run_id'] == '1-2', 'holdout_f1'].item():.3f}"
    assert first.loc[2, "f1 n"] == "10" and first.loc[2, "champion"] == "★"


@pytest.mark.parametrize("tag", sorted(n for n, t in tags().items() if not t.multiclass))  # 2x2: binary
def test_every_word_of_the_confusion_matrix_lies_inside_its_picture(tag):
    """The "One round" tab's matrix cut its row labels ("rue not_galactic"): every text drawn, with each model
    tag's class names, must lie within the figure."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.text import Text

    from skysift.trainer.evaluation import Confusion

    fig = Confusion.from_logged({"tn": 12, "fp": 3, "fn": 1, "tp": 40}, get_tag(tag).classes).figure(
        "n = 56 held-out alerts")
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    width, height = fig.bbox.width, fig.bbox.height
    texts = [t for t in fig.findobj(Text) if t.get_visible() and t.get_text()]
    assert {*get_tag(tag).classes, "12", "40"} <= {t.get_text() for t in texts}
    for text in texts:
        box = text.get_window_extent(canvas.get_renderer())
        assert box.x0 >= 0 and box.y0 >= 0 and box.x1 <= width and box.y1 <= height, (text.get_text(), box)


def test_the_table_leaves_out_the_experiment_when_it_is_the_one_chosen():
    from skysift.app.rounds import shown_table

    runs = tidy_runs(search_runs_frame(), REFS)
    one = runs[runs["experiment"] == "unc-s1"]
    assert "experiment" not in shown_table(round_table(one)) and "experiment" in shown_table(round_table(runs))


def test_the_importance_bars_and_their_spread_share_one_order_most_important_first():
    """Each layer sorted by its own x: Vega fell back to alphabetical order and drew each bar a row off its name."""
    from skysift.app.rounds import importance_chart

    table = pd.DataFrame({"feature": ["amplitude_g", "dec", "median_r", "ndets"],
                          "importance_mean": [0.0, 0.02, 0.05, 0.01], "importance_std": [0.0, 0.05, 0.05, 0.0]})
    spec = importance_chart(table).to_dict()
    orders = [layer["encoding"]["y"]["sort"] for layer in spec["layer"]]
    assert orders == [["median_r", "dec", "ndets", "amplitude_g"]] * 2, orders


def test_a_multi_class_round_shows_its_whole_matrix_its_accuracy_and_its_class_counts():
    """A multi-class round logs its matrix with its classes and ``train_n_<class>``: the rounds page drew a 2x2
    from cells it does not have and summed lists for n (a TypeError on the "One round" tab)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.text import Text

    from skysift.app.rounds import metric_intervals
    from skysift.trainer.evaluation import Confusion

    classes = ("SN Ia", "SN II", "AGN")
    counts = {"classes": list(classes), "matrix": [[7, 2, 0], [1, 5, 1], [0, 0, 9]]}
    fig = Confusion.from_logged(counts).figure("n = 25 held-out alerts")
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    drawn = [t for t in fig.findobj(Text) if t.get_visible() and t.get_text()]
    assert {*classes, "7", "5", "9", "2"} <= {t.get_text() for t in drawn}
    for text in drawn:
        box = text.get_window_extent(canvas.get_renderer())
        assert box.x0 >= 0 and box.y0 >= 0 and box.x1 <= fig.bbox.width and box.y1 <= fig.bbox.height, text
    intervals = metric_intervals(counts)
    assert intervals["accuracy"][0] == 25 and intervals["accuracy"][1][0] < 21 / 25 < intervals["accuracy"][1][1]
    assert intervals["f1"] == (25, None)
    run = pd.Series({"train_n_SN Ia": 4.0, "train_n_SN II": 3.0, "train_n_AGN": 6.0})
    assert class_balance(run, classes).to_dict("records") == [
        {"class": "SN Ia", "count": 4}, {"class": "SN II", "count": 3}, {"class": "AGN", "count": 6}]
