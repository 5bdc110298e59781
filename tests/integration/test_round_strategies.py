"""Every query strategy through a real round (real S3 and MLflow servers, real Fink alerts, oracle labels), the
diverse first batch, and the pool filters: what a queue holds and why."""

from __future__ import annotations

import pytest

from skysift.store import open_store
from skysift.trainer import strategies
from skysift.trainer.labels import LabelEvent
from skysift.trainer.rounds import Trainer
from skysift.trainer.settings import TrainerSettings
from tests.trainer_data import fink_alerts_and_features, oracle_table, s3_mlflow_settings, write_fink_batches


@pytest.fixture(scope="module")
def settings(s3_server, mlflow_server):
    return s3_mlflow_settings(s3_server, mlflow_server)


def _store(settings, name: str):
    own = settings.model_copy(update={"store_url": f"{settings.store_url}-{name}"})
    store = open_store(settings=own)
    return own, store, write_fink_batches(store)


@pytest.fixture(scope="module")
def labelled(settings):
    """A store with the Fink batches and 40 oracle labels of both classes."""
    own, store, pool = _store(settings, "labelled")
    oracle = oracle_table()
    oracle = oracle[oracle["candid"].isin(pool["candid"])]
    chosen = oracle.groupby("label").head(20)
    trainer = Trainer(own, store, TrainerSettings(permutation_repeats=1))
    trainer.labels.submit([LabelEvent(candid=int(r.candid), object_id=r.objectId, label=r.label, user="oracle",
                                      source="oracle") for r in chosen.itertuples()])
    return trainer, set(chosen["objectId"])


@pytest.mark.parametrize("name", [*strategies.REGISTRY, "default"])
def test_each_strategy_runs_a_round_and_queues_one_alert_per_unanswered_object(labelled, settings, name):
    trainer, answered = labelled
    result = trainer.run_round(f"strategy-{name}", "galactic", strategy=name, seed=1)
    queue = trainer.get_queue(f"strategy-{name}", result.round)
    assert result.created and result.model_version and result.strategy == name
    assert 0 < result.metrics["decision_threshold"] < 1 and "holdout_f1_at_threshold" in result.metrics
    objects = [i.object_id for i in queue.items]
    assert len(objects) == 10 and len(set(objects)) == 10 and all(objects) and not set(objects) & answered
    assert all(i.reason and i.strategy == name for i in queue.items)
    meta = trainer.meta(f"strategy-{name}", result.round)
    assert meta["requested_strategy"] == name and meta["decision_threshold"] == result.metrics["decision_threshold"]


def test_a_diverse_first_batch_before_any_label(settings):
    own, store, _ = _store(settings, "cold")
    trainer = Trainer(own, store, TrainerSettings(initial_strategy="diverse", permutation_repeats=1))
    result = trainer.run_round("cold-diverse", "galactic", strategy="default", initial_batch_size=12, seed=2)
    items = trainer.get_queue("cold-diverse").items
    assert result.strategy == "diverse" and result.model_version == "" and len(items) == 12
    assert len({i.object_id for i in items}) == 12
    assert all(i.reason.startswith("initial batch (no model yet): diverse: ") for i in items)


def test_the_pool_filter_keeps_alerts_too_poor_to_decide_out_of_the_queue(settings):
    own, store, pool = _store(settings, "filtered")
    trainer = Trainer(own, store, TrainerSettings(pool_min_detections=5, pool_band="r", permutation_repeats=1))
    result = trainer.run_round("filtered", "galactic", strategy="random", initial_batch_size=500, seed=0)
    queued = {i.candid for i in trainer.get_queue("filtered").items}
    r_band = [c for c in pool.columns if c.endswith("_r")]  # the light-curve features of the r band
    rich = pool[(pool["ndets"] >= 5) & pool[r_band].notna().any(axis=1)]
    alerts, _ = fink_alerts_and_features()
    objects_of_rich = {o for c, o in zip(alerts.column("candid").to_pylist(), alerts.column("objectId").to_pylist())
                       if c in set(rich["candid"])}
    assert queued <= set(rich["candid"]) and len(queued) == len(objects_of_rich) == result.queue_size
    assert len(rich) < len(pool)  # the filter took something out
    survey = Trainer(own, store, TrainerSettings(pool_survey="lsst", permutation_repeats=1)).run_round(
        "filtered-lsst", "galactic", strategy="random", seed=0)
    assert survey.queue_size == 0 and "pass the pool filter (survey lsst)" in survey.message
