"""Rounds 0..3 on real Fink alerts with oracle (SIMBAD) labels, against a real S3 server and a real MLflow server.

The rounds run once per module (a labeller answers each queue with the oracle's label, or ``skip`` when the
SIMBAD type says nothing); each test then checks one aspect of what they left behind. The module registers its
own model (``<mlflow_prefix>_galactic``) and experiments, so no other module moves its champion or adds versions;
what the rounds did to the alias is read right after them, in the fixture: tests that run rounds of their own
(on a registered model of their own) may then run in any order.
"""

from __future__ import annotations

import json
import threading
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score

from skysift.features.core import FEATURE_COLUMNS, FEATURE_SET_VERSION
from skysift.modeltags import get_tag
from skysift.store import open_store
from skysift.trainer.labels import LabelEvent, LabelStore
from skysift.trainer.rounds import Trainer
from skysift.trainer.settings import TrainerSettings
from tests.trainer_data import fink_alerts_and_features, oracle_table, s3_mlflow_settings, write_fink_batches

ROUNDS = 4


@pytest.fixture(scope="module")
def settings(s3_server, mlflow_server, mlflow_prefix):
    return s3_mlflow_settings(s3_server, mlflow_server, mlflow_prefix)


@pytest.fixture(scope="module")
def run(settings):
    """Rounds 0..3 with uncertainty sampling; returns the trainer, each round's result and the pool."""
    store = open_store(settings=settings)
    pool = write_fink_batches(store)
    oracle = oracle_table().set_index("candid")["label"]
    trainer = Trainer(settings, store, _trainer_settings(settings, permutation_repeats=2))
    assert _champion(settings) is None  # the module's own registered model: no champion before its rounds
    results, queues = [], []
    for _ in range(ROUNDS):
        result = trainer.run_round("fink-al", "galactic", strategy="uncertainty", seed=3)
        queue = trainer.get_queue("fink-al", result.round)
        results.append(result)
        queues.append(queue)
        trainer.labels.submit([
            LabelEvent(candid=i.candid, object_id=i.object_id, label=oracle.get(i.candid, "skip"), user="oracle",
                       source="oracle", experiment="fink-al", round=result.round, model_tag="galactic")
            for i in queue.items
        ])
    return SimpleNamespace(trainer=trainer, results=results, queues=queues, pool=pool,
                           champion_after=_champion(settings))


def _trainer_settings(settings, **values) -> TrainerSettings:
    """Trainer settings whose MLflow experiments are named after the registered model's prefix."""
    return TrainerSettings(mlflow_experiment_prefix=settings.mlflow_model_prefix, **values)


def _client(settings):
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    return MlflowClient()


def _load_model(settings, version: str):
    import mlflow.sklearn

    _client(settings)  # points MLflow's default at this server: another module may have pointed it elsewhere
    return mlflow.sklearn.load_model(f"models:/{_model(settings)}/{version}")


def _own_store(settings, name: str):
    """Settings on a fresh store in the same bucket and a registered model of their own: labels, rounds and a
    champion of their own, not the module's rounds'."""
    return settings.model_copy(update={"store_url": f"{settings.store_url}-{name}",
                                       "mlflow_model_prefix": f"{settings.mlflow_model_prefix}-{name}"})


def _model(settings) -> str:
    return get_tag("galactic").registered_name(settings.mlflow_model_prefix)


def _champion(settings) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return _client(settings).get_model_version_by_alias(_model(settings), "champion").version
    except MlflowException:
        return None


def test_round_zero_queues_a_random_initial_batch_with_alert_keys(run):
    items = run.queues[0].items
    assert run.results[0].round == 0 and run.results[0].model_version == "" and len(items) == 30
    assert {i.strategy for i in items} == {"random"} and all(np.isnan(i.probability) for i in items)
    alerts = run.trainer.store.read_table(items[0].alerts_key, columns=["candid", "objectId"]).to_pandas()
    ids = dict(zip(alerts["candid"], alerts["objectId"]))
    assert all(ids[i.candid] == i.object_id for i in items if i.alerts_key == items[0].alerts_key)


def test_trained_rounds_queue_the_most_uncertain_pool_alerts_in_order_one_per_object(run, settings):
    last, queue = run.results[-1], run.queues[-1]
    model = _load_model(settings, last.model_version)
    alerts, _ = fink_alerts_and_features()
    object_of = dict(zip(alerts.column("candid").to_pylist(), alerts.column("objectId").to_pylist()))
    labelled_before = {i.candid for q in run.queues[:-1] for i in q.items}
    answered = {object_of[c] for c in labelled_before}  # galactic is an object's class: its other alerts are answered
    unlabelled = run.pool[~run.pool["candid"].isin(labelled_before)
                          & ~run.pool["candid"].map(object_of).isin(answered)].copy()
    p = model.predict_proba(unlabelled[FEATURE_COLUMNS])[:, 1]
    unlabelled["uncertainty"] = 1 - np.maximum(p, 1 - p)
    best_per_object = unlabelled.groupby(unlabelled["candid"].map(object_of))["uncertainty"].max().sort_values()
    scores = [i.score for i in queue.items]
    assert len(scores) == 10 and scores == sorted(scores, reverse=True)
    assert len({i.object_id for i in queue.items}) == 10 and not {i.object_id for i in queue.items} & answered
    # nothing left in the pool is more uncertain than the last queued alert, counting each object once
    assert best_per_object.iloc[-1] == pytest.approx(scores[0]) and best_per_object.iloc[-10] == pytest.approx(scores[-1])
    for item in queue.items:
        assert item.score == pytest.approx(1 - max(item.probability, 1 - item.probability))


def test_every_trained_round_registers_a_version_with_the_inference_contract(run, settings):
    client = _client(settings)
    versions = [r.model_version for r in run.results[1:]]
    assert all(versions) and len(set(versions)) == len(versions)
    for v in versions:
        mv = client.get_model_version(_model(settings), v)
        assert mv.tags["feature_set_version"] == FEATURE_SET_VERSION and mv.tags["model_tag"] == "galactic"
        assert json.loads(mv.tags["feature_columns"]) == FEATURE_COLUMNS
    model = _load_model(settings, versions[-1])
    assert model.predict_proba(run.pool[FEATURE_COLUMNS].head(5)).shape == (5, 2)


def test_champion_alias_moves_only_when_not_worse_on_the_held_out_set(run, settings):
    for r in run.results[2:]:
        new, old = r.metrics["holdout_f1"], r.metrics.get("champion_holdout_f1")
        if old is not None:
            assert r.champion_moved == (new >= old), r.message
    moved = [r.model_version for r in run.results if r.champion_moved]
    assert moved and moved[0] == run.results[1].model_version  # the first model is the first champion
    assert run.champion_after == moved[-1]


def test_rounds_log_params_held_out_metrics_and_artifacts(run, settings):
    client = _client(settings)
    r = run.results[2]
    run_ = client.get_run(r.mlflow_run_id)
    assert run_.data.params["round"] == "2" and run_.data.params["strategy"] == "uncertainty"
    assert run_.data.params["n_train"] == str(r.n_train) and run_.data.params["feature_set_version"] == FEATURE_SET_VERSION
    for name in ("holdout_accuracy", "holdout_precision", "holdout_recall", "holdout_f1", "train_accuracy",
                 "train_positive_fraction", "holdout_n"):
        assert name in run_.data.metrics
    artifacts = {a.path for a in client.list_artifacts(r.mlflow_run_id)}
    assert {"training_ids.csv", "holdout_ids.csv", "queue.csv", "permutation_importance.csv",
            "permutation_importance.png"} <= artifacts
    logged = pd.read_csv(client.download_artifacts(r.mlflow_run_id, "training_ids.csv"))
    stored = run.trainer.store.read_table(f"rounds/fink-al/round={r.round:03d}/training_ids.parquet").to_pandas()
    assert sorted(logged["candid"]) == sorted(stored["candid"]) and len(stored) == r.n_train


def test_held_out_labels_are_never_trained_on_and_the_split_is_sticky(run):
    prev_train, prev_hold = set(), set()
    for r in run.results:
        prefix = f"rounds/fink-al/round={r.round:03d}/"
        train = set(run.trainer.store.read_table(prefix + "training_ids.parquet").column("candid").to_pylist())
        hold = set(run.trainer.store.read_table(prefix + "holdout_ids.parquet").column("candid").to_pylist())
        assert not train & hold
        assert prev_train <= train and prev_hold <= hold
        prev_train, prev_hold = train, hold
    assert len(prev_hold) > 0


def test_a_round_lists_the_label_events_once_and_running_again_without_new_labels_creates_none(run, settings):
    client = _client(settings)
    before = len(client.search_model_versions(f"name='{_model(settings)}'"))
    listed: list[str] = []
    run.trainer.store.client.meta.events.register(
        "before-parameter-build.s3.ListObjectsV2", lambda params, **_: listed.append(params["Prefix"]))
    latest = run.trainer.run_round("fink-al", "galactic", strategy="uncertainty", seed=3)
    assert latest.round == run.results[-1].round + 1 and latest.created  # the last queue's labels are new
    assert latest.n_train and sum(p.endswith("labels/events/") for p in listed) == 1, listed  # labels and conflicts
    again = run.trainer.run_round("fink-al", "galactic", strategy="uncertainty", seed=3)
    assert not again.created and again.round == latest.round and again.mlflow_run_id == latest.mlflow_run_id
    assert len(client.search_model_versions(f"name='{_model(settings)}'")) == before + 1
    assert run.trainer.rounds("fink-al")[-1] == latest.round


def test_concurrent_label_submissions_on_s3_lose_nothing(settings):
    labels = LabelStore(open_store(settings=_own_store(settings, "labels")))
    barrier = threading.Barrier(2)

    def labeller(user: str, offset: int) -> None:
        barrier.wait()
        for i in range(25):
            labels.submit([LabelEvent(candid=offset + i, label="bogus", user=user)])

    threads = [threading.Thread(target=labeller, args=(u, o)) for u, o in (("s3-a", 10_000), ("s3-b", 10_000))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(labels.history()) == 50
    assert len(labels.history(user="s3-a")) == 25 and len(labels.history(user="s3-b")) == 25


def test_a_round_trains_on_a_collected_dataset_instead_of_the_label_events(settings):
    from skysift.trainer.datasets import DatasetRequest, Datasets

    own = _own_store(settings, "dataset")
    store = open_store(settings=own)
    pool = write_fink_batches(store)
    oracle = oracle_table()
    labelled = oracle[oracle["candid"].isin(pool["candid"]) & (oracle["label"] != "skip")].head(60)
    trainer = Trainer(own, store, _trainer_settings(own, permutation_repeats=1))
    trainer.labels.submit([LabelEvent(candid=int(r.candid), label=r.label, user="oracle", source="oracle")
                           for r in labelled.itertuples()])
    dataset = Datasets(own, store, trainer.ts).collect(DatasetRequest(name="forty", max_samples=40))
    result = trainer.run_round("fink-ds", "galactic", strategy="uncertainty", seed=3, dataset_id=dataset.dataset_id)
    assert result.created and result.n_train + result.n_holdout == dataset.n_samples == 40  # not the 60 labels
    params = _client(own).get_run(result.mlflow_run_id).data.params
    assert params["dataset_id"] == dataset.dataset_id and params["n_train"] == str(result.n_train)
    samples = set(store.read_table(dataset.samples_key, columns=["candid"]).column("candid").to_pylist())
    trained = set(store.read_table("rounds/fink-ds/round=000/training_ids.parquet").column("candid").to_pylist())
    assert trained <= samples


def test_a_deliberately_worse_round_keeps_the_champion_and_a_better_one_moves_it(settings):
    """Three rounds on the same labels and held-out rows, with a modest, a crippled and the default model; the F1
    each is judged on is computed here from the registered models, not taken from the trainer."""
    own = _own_store(settings, "champion")
    store = open_store(settings=own)
    pool = write_fink_batches(store).drop_duplicates("candid").set_index("candid")
    oracle = oracle_table()
    labelled = oracle[oracle["candid"].isin(pool.index) & (oracle["label"] != "skip")]
    trainer = Trainer(own, store, _trainer_settings(own, permutation_repeats=1))
    trainer.labels.submit([LabelEvent(candid=int(r.candid), label=r.label, user="oracle", source="oracle")
                           for r in labelled.itertuples()])
    champions = []

    def round_with(params: dict):
        result = trainer.run_round("champion", "galactic", seed=3, params=params, force=True)
        champions.append(_champion(own))
        return result

    modest = round_with({"max_iter": 3})
    # barely moves from the prior: one class for all (unweighted: balanced weights put the prior at 0.5 exactly)
    worse = round_with({"max_iter": 1, "learning_rate": 0.01, "class_weight": "none"})
    better = round_with({})
    held = store.read_table("rounds/champion/round=000/holdout_ids.parquet").to_pandas()
    for r in (worse, better):  # the split is sticky: every round is judged on the same rows
        again = store.read_table(f"rounds/champion/round={r.round:03d}/holdout_ids.parquet").to_pandas()
        assert sorted(again["candid"]) == sorted(held["candid"])
    X = pool.loc[held["candid"], FEATURE_COLUMNS]
    f1 = [f1_score(held["target"], _load_model(own, r.model_version).predict(X)) for r in (modest, worse, better)]
    assert f1[1] < f1[0] < f1[2], f1  # what the rounds were built to be
    assert champions == [modest.model_version, modest.model_version, better.model_version]
    assert (modest.champion_moved, worse.champion_moved, better.champion_moved) == (True, False, True)


def test_an_objects_label_counts_for_its_other_alerts_in_training_and_they_are_not_queued(settings):
    """galactic is an object's class: one labelled alert of a star answers for the star's other alerts (training
    rows with the same label), unless the object has a held-out alert (that would leak the held-out answer)."""
    own = _own_store(settings, "objects")
    store = open_store(settings=own)
    pool = write_fink_batches(store)
    alerts, _ = fink_alerts_and_features()
    object_of = dict(zip(alerts.column("candid").to_pylist(), alerts.column("objectId").to_pylist()))
    oracle = oracle_table()
    oracle = oracle[oracle["candid"].isin(pool["candid"]) & (oracle["label"] != "skip")]
    oracle = oracle.assign(obj=oracle["candid"].map(object_of))
    labelled = oracle.drop_duplicates("obj").head(80)  # one alert of each object, others of many-alert objects unlabelled
    trainer = Trainer(own, store, _trainer_settings(own, permutation_repeats=1))
    trainer.labels.submit([LabelEvent(candid=int(r.candid), object_id=r.obj, label=r.label, user="oracle", source="oracle")
                           for r in labelled.itertuples()])
    result = trainer.run_round("objects", "galactic", strategy="uncertainty", seed=3)
    prefix = "rounds/objects/round=000/"
    train = store.read_table(prefix + "training_ids.parquet").to_pandas()
    held = store.read_table(prefix + "holdout_ids.parquet").to_pandas()
    label_of = dict(zip(labelled["candid"], labelled["label"]))
    train_objects = {object_of[c] for c in train["candid"] if c in label_of}
    held_objects = {object_of[c] for c in held["candid"]}
    siblings = pool[pool["candid"].map(object_of).isin(train_objects - held_objects) & ~pool["candid"].isin(label_of)]
    assert len(siblings) >= 10  # the Fink sample has objects with up to 21 alerts
    lent = train[~train["candid"].isin(label_of)]
    assert sorted(lent["candid"]) == sorted(siblings["candid"].unique())
    first_label = {object_of[c]: lbl for c, lbl in label_of.items()}
    assert all(lbl == first_label[object_of[c]] for c, lbl in zip(lent["candid"], lent["label"]))
    assert not set(pool.loc[pool["candid"].map(object_of).isin(held_objects), "candid"]) & (set(train["candid"]) - set(label_of))
    assert result.n_train == len(train) == len(set(train["candid"]))
    queued = {i.object_id for i in trainer.get_queue("objects", result.round).items}
    assert not queued & (train_objects | held_objects)
