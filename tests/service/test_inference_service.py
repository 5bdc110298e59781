"""The Inference service through a real gRPC server on loopback, a real MLflow registry and real ZTF packets.

Each module points its own alias at a registered model, so other tests' champions never interfere.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime

import grpc
import pytest

from skysift import config
from skysift.client import InferenceClient, response_dicts
from skysift.inference import service
from skysift.rpc import server
from skysift.store import keys, open_store
from tests import servers
from tests.inference_support import base_model, other_model, point_alias, registered_name, ztf_packets


@pytest.fixture(scope="module")
def env(mlflow_server, tmp_path_factory):
    uri = mlflow_server.env["SKYSIFT_MLFLOW_TRACKING_URI"]
    alias = f"svc{uuid.uuid4().hex[:8]}"
    point_alias(uri, "galactic", alias, base_model(uri))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SKYSIFT_MLFLOW_TRACKING_URI", uri)
        mp.setenv("SKYSIFT_STORE_URL", str(tmp_path_factory.mktemp("inference") / "store"))
        mp.setenv("SKYSIFT_INFERENCE_ALIAS", alias)
        mp.setenv("SKYSIFT_INFERENCE_MODEL_TAGS", "galactic,realbogus")  # realbogus: no champion under this alias
        mp.setenv("SKYSIFT_INFERENCE_POLL_SECONDS", "0.5")
        yield uri, alias, config.load()


@pytest.fixture(scope="module")
def packets():
    return ztf_packets()


@pytest.fixture(scope="module")
def features_key(env, packets):
    """The packets' alerts and features stored as one poll's batches, as ingest and features write them."""
    from skysift.alerts.decode import decode_packets
    from skysift.features.core import compute_features

    store = open_store(settings=env[2])
    alerts = decode_packets(packets).alerts["ztf"]
    batch = keys.new_batch("features", "ztf")
    store.write_table(str(batch.sibling("alerts")), alerts)
    store.write_table(str(batch), compute_features(alerts))
    return str(batch)


@pytest.fixture(scope="module")
def client(env):
    running = server.start("inference", lambda s: service.register(s, env[2]), env[2], servers.free_port())
    with InferenceClient(f"127.0.0.1:{running.port}") as c:
        c.wait_ready(30)
        yield c
    running.stop(1)


def by_candid(predictions: list[dict]) -> dict[int, dict]:
    return {p["candid"]: p["probabilities"] for p in predictions}


def test_key_candids_and_raw_packets_give_the_same_probabilities(client, features_key, packets):
    by_key = by_candid(client.score_key(features_key, ["galactic"], write=False))
    by_candids = by_candid(client.score_candids(list(by_key), ["galactic"]))
    by_packets = by_candid(client.score_packets(packets, model_tags=["galactic"]))
    assert len(by_key) == len(packets)
    assert by_candids == by_key
    assert by_packets == by_key


def test_probabilities_are_scikit_learns_predict_proba_of_the_registered_model_on_the_stored_rows(
        client, features_key, packets, env, tmp_path):
    """The check that does not compare one scoring path with another: the served version loaded from MLflow with
    mlflow.sklearn, and its predict_proba on the stored feature rows (the version's columns, NaN left as NaN)."""
    import mlflow.artifacts
    import mlflow.sklearn
    from mlflow import MlflowClient

    uri = env[0]
    (served,) = client.models()
    version = MlflowClient(uri).get_model_version(served["model_name"], served["model_version"])
    path = mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{version.name}/{version.version}",
                                               dst_path=str(tmp_path), tracking_uri=uri)
    estimator = mlflow.sklearn.load_model(path)
    rows = open_store(settings=env[2]).read_table(features_key).to_pandas()
    X = rows[json.loads(version.tags["feature_columns"])]
    assert X.isna().any(axis=None)  # real rows with missing features: filling them in would change the answer
    expected = dict(zip(rows["candid"], estimator.predict_proba(X)[:, 1]))
    forms = {"features key": client.score_key(features_key, ["galactic"], write=False),
             "candids": client.score_candids(list(expected), ["galactic"]),
             "packets": client.score_packets(packets, model_tags=["galactic"])}
    for form, predictions in forms.items():
        got = {p["candid"]: p["probabilities"]["galactic"] for p in predictions}
        assert got.keys() == expected.keys(), form
        assert [got[c] for c in expected] == pytest.approx(list(expected.values()), abs=1e-6), form


def test_packed_and_per_alert_forms_give_identical_predictions(client, features_key, packets):
    pb = service.inference_pb2
    by_key = client.score_key(features_key, ["galactic"], write=False)
    tags = ["galactic"]
    requests = [(client.stub.Score, pb.ScoreRequest(features_key=features_key, skip_write=True, model_tags=tags)),
                (client.stub.ScoreCandids, pb.ScoreCandidsRequest(candids=[p["candid"] for p in by_key][::-1],
                                                                  model_tags=tags)),
                (client.stub.ScoreAlerts, pb.ScoreAlertsRequest(packets=packets, model_tags=tags))]
    for rpc, request in requests:
        per_alert = rpc(request)
        request.packed = True
        packed = rpc(request)
        assert len(per_alert.predictions) == len(packets) and not per_alert.packed
        assert len(packed.packed) == 1 and not packed.predictions
        assert response_dicts(packed) == response_dicts(per_alert), type(request).__name__


@pytest.mark.parametrize("packed", [False, True])
def test_bad_requests_are_invalid_argument_in_either_form(client, features_key, packed):
    pb = service.inference_pb2
    bad = [(client.stub.ScoreCandids, pb.ScoreCandidsRequest(candids=[], packed=packed)),
           (client.stub.ScoreCandids, pb.ScoreCandidsRequest(candids=[1], model_tags=["nonesuch"], packed=packed)),
           (client.stub.Score, pb.ScoreRequest(features_key="not/a/features/key", packed=packed)),
           (client.stub.ScoreAlerts, pb.ScoreAlertsRequest(packets=[], packed=packed))]
    for rpc, request in bad:
        with pytest.raises(grpc.RpcError) as err:
            rpc(request)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (type(request).__name__, err.value.details())


def test_stream_refuses_the_packed_form(client, features_key):
    request = service.inference_pb2.ScoreRequest(features_key=features_key, skip_write=True, packed=True)
    with pytest.raises(grpc.RpcError) as err:
        list(client.stub.StreamScores(request))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "call Score with packed=true" in err.value.details()


def test_prediction_names_model_version_and_feature_set(client, features_key, env):
    (first, *_) = client.score_key(features_key, ["galactic"], write=False)
    (model,) = client.models()
    assert (first["model_name"], first["model_version"]) == (registered_name("galactic"), model["model_version"])
    assert first["feature_set_version"] == model["feature_set_version"]
    assert list(first["probabilities"]) == ["not_galactic", "galactic"]
    assert sum(first["probabilities"].values()) == pytest.approx(1.0)


def test_score_writes_predictions_beside_the_features(client, features_key, env):
    resp = client.stub.Score(service.inference_pb2.ScoreRequest(features_key=features_key, model_tags=["galactic"]))
    assert resp.written.key == str(keys.parse_batch(features_key).sibling("predictions"))
    table = open_store(settings=env[2]).read_table(resp.written.key)
    assert table.num_rows == len(resp.predictions) == resp.written.rows


def test_stream_yields_the_unary_predictions(client, features_key):
    assert list(client.stream(features_key, ["galactic"])) == client.score_key(features_key, ["galactic"], write=False)


def test_no_champion_is_failed_precondition(client, features_key):
    with pytest.raises(grpc.RpcError) as err:
        client.score_key(features_key, ["realbogus"], write=False)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "no model yet: run `skysift round`" in err.value.details()


def test_features_of_another_version_are_failed_precondition(client, features_key, env):
    store = open_store(settings=env[2])
    table = store.read_table(features_key)
    old = keys.new_batch("features", "ztf", datetime(2024, 1, 1, tzinfo=UTC))
    store.write_table(str(old), table.replace_schema_metadata({"skysift.feature_set_version": "0"}))
    with pytest.raises(grpc.RpcError) as err:
        client.score_key(str(old), ["galactic"], write=False)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "feature set version 1" in err.value.details() and "these features are version 0" in err.value.details()


def test_unknown_candid_is_not_found(client):
    with pytest.raises(grpc.RpcError) as err:
        client.score_candids([1], ["galactic"])
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_undecodable_packet_is_reported_not_fatal(client, packets):
    resp = client.stub.ScoreAlerts(service.inference_pb2.ScoreAlertsRequest(
        packets=[packets[0], b"not an alert"], model_tags=["galactic"]))
    assert len(resp.predictions) == 1
    assert "1 of 2 packets could not be decoded" in resp.message


def test_new_champion_is_served_without_restart(client, features_key, env):
    uri, alias, _ = env
    before = by_candid(client.score_key(features_key, ["galactic"], write=False))
    version = other_model(uri)
    point_alias(uri, "galactic", alias, version)
    deadline = time.monotonic() + 60
    while client.models()[0]["model_version"] != version and time.monotonic() < deadline:
        time.sleep(0.2)
    after = client.score_key(features_key, ["galactic"], write=False)
    assert {p["model_version"] for p in after} == {version}
    assert by_candid(after) != before


def test_packets_can_be_enriched_before_features(client, packets):
    enriched = client.score_packets(packets[:5], model_tags=["galactic"], enrich=True)
    assert [p["candid"] for p in enriched] == [p["candid"] for p in client.score_packets(packets[:5], model_tags=["galactic"])]


def test_champion_loads_from_its_own_tracking_uri_whatever_mlflow_s_process_default(env, tmp_path, monkeypatch):
    """A process whose MLflow default points at another server (MLFLOW_TRACKING_URI in its environment, or a
    ``mlflow.set_tracking_uri`` elsewhere in it) still loads from SKYSIFT_MLFLOW_TRACKING_URI."""
    import mlflow.tracking._tracking_service.utils as mlflow_default

    from skysift.inference.registry import ChampionRegistry

    uri, alias, settings = env
    elsewhere = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", elsewhere)
    monkeypatch.setattr(mlflow_default, "_tracking_uri", elsewhere)
    registry = ChampionRegistry(uri, ["galactic"], alias=alias, model_prefix=settings.mlflow_model_prefix)
    assert registry.refresh_tag("galactic").startswith("loaded v")
    assert registry.get("galactic").name == registered_name("galactic")
