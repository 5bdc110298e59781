"""Rounds and datasets pages (AppTest) on real rounds: a trainer process logging to a real MLflow server,
real ZTF alerts labelled by their SIMBAD cross-match (the oracle), two strategies."""

import os
from datetime import date

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from skysift import config
from skysift.app.trainer import TrainerClient
from skysift.store import open_store
from tests.app_support import (
    APP,
    label_queue,
    labelling_batch,
    oracle_labels,
    run_round,
    start_trainer,
)

STRATEGIES = {"al-uncertainty": "uncertainty", "al-random": "random"}
BATCH_DAY = date(2024, 5, 1)  # the poll time of the batch in its key (see app_support.write_batch)


@pytest.fixture(scope="module")
def world(tmp_path_factory, mlflow_server, mlflow_prefix):
    """Per strategy: round 0 queues 30 alerts, the oracle labels them, round 1 trains and queues 10, and so on.
    The page compares every experiment under the module's own prefix, and shows the module's own champion."""
    work = tmp_path_factory.mktemp("rounds")
    env = {**os.environ, **mlflow_server.env, "SKYSIFT_STORE_URL": str(work / "store"),
           "SKYSIFT_SECRETS_DIR": str(work / "no-secrets"), "SKYSIFT_LOG_JSON": "false"}
    settings = config.Settings(store_url=env["SKYSIFT_STORE_URL"])
    _, table = labelling_batch(open_store(settings=settings), settings)
    oracle = oracle_labels(table)
    trainer = start_trainer(work, env)
    env.update(trainer.env)
    client = TrainerClient(config.Settings(trainer_address=trainer.env["SKYSIFT_TRAINER_ADDRESS"]), timeout=300)
    rounds = {}
    try:
        for experiment, strategy in STRATEGIES.items():
            for _ in range(3):
                r = run_round(trainer.env["SKYSIFT_TRAINER_ADDRESS"], experiment, strategy, initial=30, batch=10)
                rounds.setdefault(experiment, []).append(r)
                label_queue(client, experiment, oracle)
        unfinished_runs(env["SKYSIFT_MLFLOW_TRACKING_URI"], mlflow_prefix, rounds)
        yield {"env": env, "rounds": rounds}
    finally:
        trainer.stop()


def unfinished_runs(uri: str, prefix: str, rounds: dict) -> None:
    """Next to each experiment's rounds, a run as a round leaves it while it is being written (RUNNING) or after
    MLflow failed it (FAILED; the round was not created): params and a held-out metric, and no round behind it."""
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    for experiment, status in zip(STRATEGIES, ("RUNNING", "FAILED")):
        run_id = client.create_run(client.get_experiment_by_name(f"{prefix}/galactic/{experiment}").experiment_id).info.run_id
        for key, value in {"round": rounds[experiment][-1].round + 1, "strategy": "margin", "n_train": 999}.items():
            client.log_param(run_id, key, value)
        client.log_metric(run_id, "holdout_f1", 0.5)
        if status == "FAILED":
            client.set_terminated(run_id, status)


@pytest.fixture
def at(world, monkeypatch):
    for name in ("SKYSIFT_STORE_URL", "SKYSIFT_TRAINER_ADDRESS", "SKYSIFT_MLFLOW_TRACKING_URI", "SKYSIFT_SECRETS_DIR",
                 "SKYSIFT_TRAINER_MLFLOW_EXPERIMENT_PREFIX"):
        monkeypatch.setenv(name, world["env"][name])
    monkeypatch.setenv("SKYSIFT_APP_USER", "reviewer")
    monkeypatch.setenv("SKYSIFT_APP_EXPERIMENT", "al-uncertainty")
    st.cache_resource.clear()
    st.cache_data.clear()
    yield AppTest.from_file(str(APP), default_timeout=120)
    st.cache_resource.clear()
    st.cache_data.clear()


def rounds_page(at) -> AppTest:
    at.run()
    at.switch_page("views/rounds.py").run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    return at


def frame(at, columns: set):
    """The first dataframe on the page that has these columns."""
    return next(d.value for d in at.dataframe if columns <= set(d.value.columns))


def test_rounds_table_has_one_row_per_round_with_held_out_metrics(at, world):
    page = rounds_page(at)
    table = frame(page, {"round", "f1", "n_train"})
    assert list(table["round"]) == [r.round for r in world["rounds"]["al-uncertainty"]][::-1]  # latest first
    trained = table[table["f1"] != "–"]  # a round evaluated on nothing shows a dash, as text
    assert len(trained) >= 1 and trained["n_train"].astype(int).min() > 0
    assert {"precision", "recall", "accuracy", "train_n_positive", "train_n_negative"} <= set(table.columns)
    # each metric with the held-out alerts it rests on and its interval; the champion's round starred
    last = trained.iloc[0]
    assert int(last["f1 n"]) == int(last["n_holdout"]) == int(last["accuracy n"]) > 0
    low, high = (float(v) for v in last["f1 95%"].split("–"))
    assert low <= float(last["f1"]) <= high and high - low > 0.05  # a handful of held-out alerts: a wide interval
    assert (table["champion"] == "★").sum() <= 1
    assert table["mlflow"].str.contains(f"/#/experiments/.+/runs/{last['run_id']}").any()


def test_strategies_are_compared_as_learning_curves(at, world):
    page = rounds_page(at)
    curves = frame(page, {"strategy", "mean", "min", "max"})
    assert set(curves["strategy"]) == set(STRATEGIES.values())
    evaluated = {(r.strategy, r.n_train) for rs in world["rounds"].values() for r in rs if "holdout_f1" in r.metrics}
    assert set(zip(curves["strategy"], curves["n_train"].astype(int))) == evaluated  # no unfinished run among them
    assert (curves["min"] <= curves["mean"]).all() and (curves["mean"] <= curves["max"]).all()


def test_one_round_shows_confusion_matrix_importance_and_class_balance(at, world, mlflow_prefix):
    trained = next(r for r in world["rounds"]["al-uncertainty"] if r.model_version)
    page = rounds_page(at)
    page.selectbox(key="one_round").set_value(trained.mlflow_run_id).run()
    assert not page.exception
    importance = frame(page, {"feature", "importance_mean"})
    assert len(importance) > 5
    captions = [c for img in page.image for c in img.captions]
    assert f"held-out confusion matrix, round {trained.round}" in captions
    # metric per round, strategies, this round's class balance and importance
    assert len(page.get("vega_lite_chart")) == 4
    # the champion is one of this module's rounds, whichever modules ran before
    ours = [f"Champion: **{mlflow_prefix}_galactic version {r.model_version}** (experiment {name}, round {r.round}, "
            f"run `{r.mlflow_run_id}`)" for name, rs in world["rounds"].items() for r in rs if r.model_version]
    assert page.caption[0].value in ours


def test_two_runs_side_by_side_show_what_differs(at, world):
    a = world["rounds"]["al-uncertainty"][-1].mlflow_run_id
    b = world["rounds"]["al-random"][-1].mlflow_run_id
    page = rounds_page(at)
    page.selectbox(key="run_a").set_value(a).run()
    page.selectbox(key="run_b").set_value(b).run()
    diff = frame(page, {"field", "A", "B"}).set_index("field")
    assert diff.loc["strategy"].tolist() == ["uncertainty", "random"]
    assert diff.loc["experiment"].tolist() == ["al-uncertainty", "al-random"]


def test_collect_list_and_inspect_a_dataset(at, world):
    at.run()
    at.switch_page("views/datasets.py").run()
    assert not at.exception
    form_name = next(t for t in at.text_input if t.label == "Name")
    form_name.input("oracle-set")
    next(d for d in at.date_input if d.label == "From").set_value(BATCH_DAY)
    next(d for d in at.date_input if d.label == "To (inclusive)").set_value(BATCH_DAY)
    next(b for b in at.button if b.label == "Collect").click().run()  # the form's submit button
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert at.success[0].value.startswith("Dataset ")
    listed = frame(at, {"dataset_id", "samples", "quality"})
    assert listed["name"].tolist() == ["oracle-set"] and listed["samples"].iloc[0] > 0
    samples = frame(at, {"candid", "target"})
    assert len(samples) == min(200, listed["samples"].iloc[0])


def run_round_now(at, experiment: str, strategy: str = "uncertainty") -> AppTest:
    """Fill the "Run a round now" form (one Trainer.RunRound call) and submit it."""
    next(t for t in at.text_input if t.label == "Experiment").input(experiment)
    next(s for s in at.selectbox if s.label == "Strategy").set_value(strategy)
    next(b for b in at.button if b.label == "Run a round now").click().run()
    assert not at.exception, at.exception
    return at


def test_run_a_round_now_runs_it_in_the_trainer_and_shows_the_result(at, world):
    page = run_round_now(rounds_page(at), "app-button")
    assert not page.error, [e.value for e in page.error]
    assert page.success[0].value.startswith("Round **0** of app-button created (uncertainty)")
    held_out = frame(page, {"metric", "value"}).set_index("metric")["value"]
    assert {"accuracy", "precision", "recall", "f1"} <= set(held_out.index)  # the oracle's labels train round 0
    client = TrainerClient(config.Settings(trainer_address=world["env"]["SKYSIFT_TRAINER_ADDRESS"]))
    assert client.queue("app-button").round == 0
    assert "app-button" in next(s for s in page.selectbox if s.label == "Experiment").options  # caches cleared


def test_run_a_round_now_without_new_labels_says_none_was_created(at, world):
    page = run_round_now(rounds_page(at), "app-idle")
    assert page.success[0].value.startswith("Round **0** of app-idle created")
    run_round_now(page, "app-idle")
    assert not page.success
    assert page.info[0].value.startswith("No round created: round **0** of app-idle stays the latest.")
