"""Trainer over real gRPC on loopback (local store, real MLflow server): labels, queue, round, datasets."""

from __future__ import annotations

import json
import threading

import pytest

from skysift import config, errors
from skysift.rpc import server
from skysift.rpc.errors import call
from skysift.store import keys, open_store
from skysift.trainer import service
from skysift.v1 import trainer_pb2, trainer_pb2_grpc
from tests import servers
from tests.servers import free_port
from tests.trainer_data import fink_alerts_and_features, oracle_table, write_fink_batches


@pytest.fixture(scope="module")
def running(tmp_path_factory, mlflow_server):
    settings = config.Settings(store_url=str(tmp_path_factory.mktemp("trainer") / "store"),
                               mlflow_tracking_uri=mlflow_server.env["SKYSIFT_MLFLOW_TRACKING_URI"])
    store = open_store(settings=settings)
    write_fink_batches(store)
    r = server.start("trainer", lambda s: service.register(s, settings), settings, port=0, metrics_port=free_port())
    yield r, store, settings
    r.stop(0)


@pytest.fixture
def stub(running):
    with servers.channel(running[0].port) as ch:
        yield trainer_pb2_grpc.TrainerStub(ch)


def _event(candid, label, user="ana", **kw):
    return trainer_pb2.LabelEvent(candid=candid, label=label, user=user, **kw)


def _submit(stub, *events):
    """SubmitLabels as the app does it: the labels' user named in the header (the test token has the app role)."""
    return call(stub.SubmitLabels, trainer_pb2.SubmitLabelsRequest(labels=events), metadata=servers.as_user(events[0].user))


def test_submitted_labels_come_back_latest_and_in_history(stub):
    _submit(stub, _event(101, "galactic", round=0))
    ids = _submit(stub, _event(101, "bogus", user="ben")).event_ids
    latest = call(stub.GetLabels, trainer_pb2.GetLabelsRequest(candids=[101])).labels
    assert [(e.label, e.user, e.event_id) for e in latest] == [("bogus", "ben", ids[0])]
    history = call(stub.GetLabels, trainer_pb2.GetLabelsRequest(candids=[101], history=True)).labels
    assert [e.label for e in history] == ["galactic", "bogus"]
    assert history[0].HasField("round") and history[0].round == 0 and not history[1].HasField("round")


def test_unknown_label_is_invalid_argument_naming_it(stub):
    with pytest.raises(errors.InvalidArgument, match="unknown label 'star'"):
        _submit(stub, _event(102, "star"))


def test_two_labellers_submitting_at_once_lose_nothing(running, stub):
    port = running[0].port
    barrier = threading.Barrier(2)

    def labeller(user):
        with servers.channel(port) as ch:
            s = trainer_pb2_grpc.TrainerStub(ch)
            barrier.wait()
            for i in range(20):
                _submit(s, _event(5000 + i, "real", user=user))

    threads = [threading.Thread(target=labeller, args=(u,)) for u in ("grpc-a", "grpc-b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for user in ("grpc-a", "grpc-b"):
        assert len(call(stub.GetLabels, trainer_pb2.GetLabelsRequest(history=True, user=user)).labels) == 20


def test_run_round_then_get_queue_ranked_with_alert_keys(stub):
    resp = call(stub.RunRound, trainer_pb2.RunRoundRequest(experiment="svc", model_tag="galactic", initial_batch_size=12,
                                                           seed=5))
    assert resp.created and resp.round == 0 and resp.queue_size == 12 and resp.strategy == "random"
    queue = call(stub.GetQueue, trainer_pb2.GetQueueRequest(experiment="svc"))
    assert [i.rank for i in queue.items] == list(range(1, 13))
    assert all(i.alerts_key.startswith("alerts/survey=ztf/") and i.object_id.startswith("ZTF") for i in queue.items)
    again = call(stub.RunRound, trainer_pb2.RunRoundRequest(experiment="svc", model_tag="galactic", seed=5))
    assert not again.created and again.round == 0


def test_run_round_pool_fields_restrict_this_rounds_queue_and_are_recorded(stub, running):
    """The request's pool filter (no SKYSIFT_TRAINER_POOL_* set): only alerts with r-band features and >= 5
    detections are queued, one per object, and the round's record says which filter it ran with."""
    alerts, features = fink_alerts_and_features()
    pool = features.to_pandas().assign(objectId=alerts.column("objectId").to_pylist())
    rich = pool[(pool["ndets"] >= 5) & pool[[c for c in pool.columns if c.endswith("_r")]].notna().any(axis=1)]
    assert 0 < len(rich) < len(pool)  # the filter has something to take out
    resp = call(stub.RunRound, trainer_pb2.RunRoundRequest(experiment="svc-pool", model_tag="galactic", strategy="random",
                                                           initial_batch_size=500, pool_band="r", pool_min_detections=5))
    queued = call(stub.GetQueue, trainer_pb2.GetQueueRequest(experiment="svc-pool")).items
    assert {i.candid for i in queued} <= set(rich["candid"]) and len(queued) == rich["objectId"].nunique() == resp.queue_size
    meta = json.loads(running[1].get_bytes(keys.round_prefix("svc-pool", 0) + "meta.json"))
    assert meta["pool_filter"] == {"survey": "", "band": "r", "min_detections": 5}
    other = call(stub.RunRound, trainer_pb2.RunRoundRequest(experiment="svc-pool-lsst", model_tag="galactic",
                                                            pool_survey="lsst"))
    assert other.queue_size == 0 and "pass the pool filter (survey lsst)" in other.message


def test_run_round_pool_fields_set_to_empty_replace_the_settings_filter(running, monkeypatch):
    """The trainer's settings queue only LSST alerts with >= 1000 detections (none of this ZTF pool): a request
    leaving the pool fields unset gets that filter, one setting them to "" / 0 clears it for its round."""
    monkeypatch.setenv("SKYSIFT_TRAINER_POOL_SURVEY", "lsst")
    monkeypatch.setenv("SKYSIFT_TRAINER_POOL_MIN_DETECTIONS", "1000")
    _, store, settings = running
    r = server.start("trainer", lambda s: service.register(s, settings), settings, port=0, metrics_port=free_port())
    try:
        with servers.channel(r.port) as ch:
            stub = trainer_pb2_grpc.TrainerStub(ch)
            kept = call(stub.RunRound, trainer_pb2.RunRoundRequest(experiment="svc-pool-kept", model_tag="galactic"))
            cleared = call(stub.RunRound, trainer_pb2.RunRoundRequest(
                experiment="svc-pool-cleared", model_tag="galactic", initial_batch_size=7, pool_survey="",
                pool_min_detections=0))
    finally:
        r.stop(0)
    assert kept.queue_size == 0 and "survey lsst" in kept.message
    assert cleared.queue_size == 7
    meta = json.loads(store.get_bytes(keys.round_prefix("svc-pool-cleared", 0) + "meta.json"))
    assert meta["pool_filter"] == {"survey": "", "band": "", "min_detections": 0}


def test_queue_of_an_unknown_experiment_is_not_found(stub):
    with pytest.raises(errors.NotFound, match="no round yet"):
        call(stub.GetQueue, trainer_pb2.GetQueueRequest(experiment="nope"))


def test_run_round_rejects_an_unknown_strategy(stub):
    with pytest.raises(errors.InvalidArgument, match="unknown strategy"):
        call(stub.RunRound, trainer_pb2.RunRoundRequest(experiment="svc2", model_tag="galactic", strategy="greedy"))


def test_collect_list_and_get_a_dataset_of_labelled_alerts(running, stub):
    store = running[1]
    oracle = oracle_table()
    pool = store.read_table(store.list_keys("features/")[0], columns=["candid"]).column("candid").to_pylist()
    chosen = oracle[oracle["candid"].isin(pool)].head(40)
    _submit(stub, *[_event(int(r.candid), r.label, user="oracle", source="oracle") for r in chosen.itertuples()])
    made = call(stub.CollectDataset, trainer_pb2.CollectDatasetRequest(name="June 2nd", model_tag="galactic",
                                                                         prefer_validated=True, max_samples=25))
    assert made.n_samples == 25 and sum(made.class_counts.values()) == 25 and made.samples_key.endswith("samples.parquet")
    manifest = json.loads(made.manifest_json)
    assert manifest["n_validated"] == 25 and manifest["mlflow"]["run_id"]
    listed = call(stub.ListDatasets, trainer_pb2.ListDatasetsRequest()).datasets
    assert made.dataset_id in {d.dataset_id for d in listed}
    assert call(stub.GetDataset, trainer_pb2.GetDatasetRequest(dataset_id=made.dataset_id)).n_samples == 25


def test_cli_round_calls_the_service_by_default(running, monkeypatch):
    from typer.testing import CliRunner

    from skysift.cli import app

    monkeypatch.setenv("SKYSIFT_TRAINER_ADDRESS", f"127.0.0.1:{running[0].port}")
    result = CliRunner().invoke(app, ["round", "--experiment", "svc-cli", "--initial-batch-size", "5",
                                      "--batch-size", "5"])
    assert result.exit_code == 0, result.output
    assert "round 0 created" in result.output and "queue: 5 alerts in rounds/svc-cli/round=000/" in result.output


def test_run_round_refuses_a_dataset_that_failed_its_quality_checks(running, stub):
    store = running[1]
    candid = store.read_table(store.list_keys("features/")[0], columns=["candid"]).column("candid")[0].as_py()
    _submit(stub, _event(candid, "galactic", user="oracle"))
    made = call(stub.CollectDataset, trainer_pb2.CollectDatasetRequest(name="one class", model_tag="galactic",
                                                                         prefer_validated=True, max_samples=1))
    with pytest.raises(errors.FailedPrecondition, match="failed its quality checks: only one class"):
        call(stub.RunRound, trainer_pb2.RunRoundRequest(experiment="svc-ds", model_tag="galactic",
                                                        dataset_id=made.dataset_id))


def test_run_round_on_an_unknown_dataset_is_not_found(stub):
    with pytest.raises(errors.NotFound, match="no dataset 'nope-1'"):
        call(stub.RunRound, trainer_pb2.RunRoundRequest(experiment="svc-ds", model_tag="galactic", dataset_id="nope-1"))
