"""The scoring core on real alerts and a real model, without MLflow or gRPC: candid lookups from cached batches,
both response forms, and the OpenMP thread cap of predict."""

from __future__ import annotations

import threading

import pyarrow as pa
import pytest

from skysift.client import response_dicts
from skysift.errors import FailedPrecondition
from skysift.inference.core import InferenceStage
from skysift.inference.service import response
from skysift.inference.settings import (
    CsvSettings,
    InferenceSettings,
    SkyPortalSettings,
    SlackSettings,
)
from tests.inference_support import Loaded, in_memory_model, store_batch


class CountingStore:
    """The store, with every method call recorded (to show what a request reads)."""

    def __init__(self, store):
        self.store = store
        self.calls: list[str] = []

    def __getattr__(self, name):
        attr = getattr(self.store, name)
        if not callable(attr):
            return attr

        def counted(*args, **kwargs):
            self.calls.append(name)
            return attr(*args, **kwargs)

        return counted


@pytest.fixture(scope="module")
def real():
    return in_memory_model()


@pytest.fixture
def stage(real, local_settings, local_store):
    config = InferenceSettings(model_tags=["galactic"], csv=CsvSettings(path=None), skyportal=SkyPortalSettings(),
                               slack=SlackSettings())
    return InferenceStage(local_settings, CountingStore(local_store), config, registry=Loaded({"galactic": real[2]}))


def two_batches(real, stage) -> tuple[str, str]:
    """The real alerts stored twice, as two polls' batches, the second with other candids."""
    alerts, features, _ = real
    first = store_batch(stage.store.store, alerts, features)
    shifted = pa.array(features.column("candid").to_numpy() + 1)
    second = store_batch(stage.store.store, alerts.set_column(alerts.schema.get_field_index("candid"), "candid", shifted),
                         features.set_column(features.schema.get_field_index("candid"), "candid", shifted), 1)
    return first, second


def by_candid(table: pa.Table) -> dict[int, tuple[str, float]]:
    return dict(zip(table.column("candid").to_pylist(),
                    zip(table.column("objectId").to_pylist(), table.column("prob_galactic").to_pylist())))


def test_candids_of_cached_batches_are_scored_without_touching_the_store(real, stage):
    key = store_batch(stage.store.store, real[0], real[1])
    candids = stage.store.read_table(key, columns=["candid"]).column("candid").to_pylist()
    stage.score_candids(candids[:3])  # first lookup: the index reads the batch
    stage.store.calls.clear()
    stage.score_candids(candids[10:20])
    stage.score_candids(candids[-1:])
    assert stage.store.calls == []


def test_candids_across_batches_in_any_order_match_scoring_each_batch_whole(real, stage):
    first, second = two_batches(real, stage)
    whole = by_candid(stage.score_batch(first, write=False).predictions)
    whole.update(by_candid(stage.score_batch(second, write=False).predictions))
    firsts = real[1].column("candid").to_pylist()
    picked = [firsts[7] + 1, firsts[3], firsts[0] + 1, firsts[7], firsts[40]]
    result = stage.score_candids(picked).predictions
    assert result.column("candid").to_pylist() == picked
    assert list(by_candid(result).values()) == [whole[c] for c in picked]


def test_packed_and_per_alert_responses_hold_the_same_predictions(real, stage):
    two_batches(real, stage)
    firsts = real[1].column("candid").to_pylist()
    result = stage.score_candids(firsts[:50] + [c + 1 for c in firsts[25:75]])
    packed, per_alert = response(result, packed_form=True), response(result)
    assert not packed.predictions and len(packed.packed) == 1
    assert len(packed.packed[0].probabilities) == 100 * len(packed.packed[0].classes)
    assert response_dicts(packed) == response_dicts(per_alert)
    assert len(response_dicts(packed)) == 100


def test_candids_of_a_batch_with_another_feature_set_version_are_refused(real, stage):
    alerts, features, _ = real
    old = features.replace_schema_metadata({"skysift.feature_set_version": "0"})
    store_batch(stage.store.store, alerts, old)
    with pytest.raises(FailedPrecondition, match="these features are version 0"):
        stage.score_candids(features.column("candid").to_pylist()[:2])


def test_a_batch_the_champion_cannot_score_leaves_the_backlog_until_the_champion_changes(real, stage):
    """Features of another feature-set version: scoring refuses, and leaves a "cannot score" marker of the champion,
    so the poll's backlog stops offering the batch for re-scoring (it took a catch-up slot every poll until it left
    the window); a new champion version gets it offered again."""
    from datetime import UTC, datetime, timedelta

    from skysift import backlog
    from skysift.store.keys import parse_batch

    alerts, features, model = real
    key = store_batch(stage.store.store, alerts, features.replace_schema_metadata({"skysift.feature_set_version": "0"}))
    with pytest.raises(FailedPrecondition, match="these features are version 0"):
        stage.score_batch(key)
    batch = parse_batch(key, "features")
    listing = {stage_name: [str(batch.sibling(stage_name))] for stage_name in ("alerts", *backlog.LATER_STAGES)}
    now = datetime(2025, 1, 1, 13, tzinfo=UTC)  # an hour after the batch's poll

    def behind(champion):
        scored = backlog.list_scored(stage.store.store, [champion], listing["alerts"], now, timedelta(days=30))
        return backlog.find_behind(listing, now, timedelta(days=30), timedelta(0), 20, scored=scored).behind_all

    assert behind((model.name, model.version)) == []
    assert [b.rescore for b in behind((model.name, f"{model.version}1"))] == [True]


def test_a_champion_of_another_feature_set_version_leaves_the_others_to_score_the_batch(real, local_settings,
                                                                                       local_store):
    """Two tags, one champion trained on other features: the batch is scored by the other (it got nothing: the
    whole batch was refused), the first is noted and marked, and the backlog leaves the batch to both."""
    from dataclasses import replace
    from datetime import UTC, datetime, timedelta

    from skysift import backlog
    from skysift.store.keys import parse_batch

    alerts, features, model = real
    old = replace(model, tag="realbogus", name="t-realbogus", version="3", feature_set_version="0")
    config = InferenceSettings(model_tags=["galactic", "realbogus"], csv=CsvSettings(path=None),
                               skyportal=SkyPortalSettings(), slack=SlackSettings())
    stage = InferenceStage(local_settings, local_store, config, registry=Loaded({"galactic": model, "realbogus": old}))
    key = store_batch(local_store, alerts, features)
    result = stage.score_batch(key)
    assert set(result.models) == {"galactic"} and result.written.rows == features.num_rows
    assert "model t-realbogus v3 left out: trained on feature set version 0" in result.message
    batch = parse_batch(key, "features")
    listing = {stage_name: [str(batch.sibling(stage_name))] for stage_name in ("alerts", *backlog.LATER_STAGES)}
    champions = [(model.name, model.version), (old.name, old.version)]
    now = datetime(2025, 1, 1, 13, tzinfo=UTC)
    scored = backlog.list_scored(local_store, champions, listing["alerts"], now, timedelta(days=30))
    assert backlog.find_behind(listing, now, timedelta(days=30), timedelta(0), 20, scored=scored).behind_all == []
    with pytest.raises(FailedPrecondition, match=f"these features are version {model.feature_set_version}"):  # named
        stage.score_batch(key, ["realbogus"], write=False)


def test_predict_leaves_the_calling_thread_with_one_openmp_thread(real):
    from threadpoolctl import threadpool_info, threadpool_limits

    model, X = real[2], real[1].select(list(real[2].feature_columns)).to_pandas().to_numpy()
    seen = {}

    def openmp_threads() -> int:
        return next(i["num_threads"] for i in threadpool_info() if i["user_api"] == "openmp")

    def scoring_thread():
        threadpool_limits(limits=2, user_api="openmp")  # what a fresh thread may have on a 2-core machine
        seen["before"] = openmp_threads()
        model.predict(X)
        seen["after"] = openmp_threads()

    worker = threading.Thread(target=scoring_thread)
    worker.start()
    worker.join()
    assert seen == {"before": 2, "after": 1}


def test_an_unreadable_features_object_does_not_stop_candid_lookups(real, stage):
    alerts, features, _ = real
    store_batch(stage.store.store, alerts, features)
    stage.store.store.put_bytes("features/survey=ztf/night=20200101/20200101_000000_features.parquet", b"not parquet")
    candids = features.column("candid").to_pylist()[:3]
    result = stage.score_candids(candids, ["galactic"])
    assert sorted(result.predictions.column("candid").to_pylist()) == sorted(candids)


def test_served_tags_without_a_champion_are_noted_not_fatal(real, local_settings, local_store):
    alerts, features, model = real
    config = InferenceSettings(model_tags=["galactic", "realbogus"], csv=CsvSettings(path=None),
                               skyportal=SkyPortalSettings(), slack=SlackSettings())
    stage = InferenceStage(local_settings, local_store, config, registry=Loaded({"galactic": model}))
    key = store_batch(local_store, alerts, features)
    result = stage.score_batch(key)
    assert set(result.models) == {"galactic"} and "realbogus" in result.message
    with pytest.raises(FailedPrecondition, match="no model yet"):
        stage.score_batch(key, ["realbogus"])  # asked for by name: its absence is the answer
