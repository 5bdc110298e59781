"""The foundation's end-to-end path: five real gRPC services as processes, a real S3 server, the real MLflow
server (the module's own registered model and experiments), real alerts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

from skysift import config
from skysift.config import SERVICES
from skysift.rpc.channels import health_status, wait_serving
from skysift.store import keys, open_store
from tests import servers

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "demo" / "alerts"
SKYSIFT = str(Path(sys.executable).parent / "skysift")


@pytest.fixture(scope="module")
def stack(s3_server, mlflow_server, mlflow_prefix, tmp_path_factory):
    """The five services on loopback, sharing a fresh S3 bucket and the MLflow server (no model registered yet
    under the module's prefix)."""
    from skysift.store.s3 import S3Store

    work = tmp_path_factory.mktemp("e2e")
    env = {**servers.inherited_env(), **s3_server.env, **mlflow_server.env, "SKYSIFT_STORE_URL": "s3://e2e/store",
           "SKYSIFT_MLFLOW_MODEL_PREFIX": mlflow_prefix, "SKYSIFT_TRAINER_MLFLOW_EXPERIMENT_PREFIX": mlflow_prefix,
           "SKYSIFT_INGEST_REPLAY_ROOT": str(REPO), "SKYSIFT_INFERENCE_POLL_SECONDS": "1"}
    S3Store(env["SKYSIFT_STORE_URL"], _settings(env)).ensure_bucket()
    procs = servers.start_services(list(SERVICES), env, work, cwd=work)
    for proc in procs.values():
        env.update(proc.env)
    try:
        for proc in procs.values():
            wait_serving(f"127.0.0.1:{proc.port}", timeout=60)
        yield env, procs
    finally:
        for proc in procs.values():
            proc.stop()


def test_every_service_answers_health_serving(stack):
    _, procs = stack
    assert {s: health_status(f"127.0.0.1:{p.port}") for s, p in procs.items()} == {s: "SERVING" for s in SERVICES}


def test_poll_writes_one_file_per_stage_traceable_by_candid(stack):
    env, _ = stack
    out = subprocess.run([SKYSIFT, "poll", "--from", str(DEMO)], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "no model yet: run `skysift round`" in out.stdout
    store = open_store(env["SKYSIFT_STORE_URL"], _settings(env))
    alerts_keys = [k for k in store.list_keys("alerts/") if k.endswith("_alerts.parquet")]
    assert {keys.parse_batch(k).survey for k in alerts_keys} == {"ztf", "lsst"}
    for alerts_key in alerts_keys:
        batch = keys.parse_batch(alerts_key)
        alerts = store.read_table(alerts_key)
        enriched = store.read_table(str(batch.sibling("enriched")))
        features = store.read_table(str(batch.sibling("features")))
        assert alerts.num_rows > 0
        assert alerts_key in out.stdout and str(batch.sibling("features")) in out.stdout
        assert sorted(enriched.column("candid").to_pylist()) == sorted(alerts.column("candid").to_pylist())
        assert sorted(features.column("candid").to_pylist()) == sorted(alerts.column("candid").to_pylist())
        assert pa.types.is_int64(features.schema.field("candid").type)


def test_labels_then_a_round_then_every_alert_is_scored_by_the_new_champion(stack):
    """The whole loop through the services: oracle labels -> `skysift round` -> champion served without a restart."""
    import time

    import pandas as pd

    from skysift.trainer.oracle import oracle_labels
    from skysift.v1 import inference_pb2, inference_pb2_grpc, trainer_pb2, trainer_pb2_grpc

    env, procs = stack
    store = open_store(env["SKYSIFT_STORE_URL"], _settings(env))
    polled = {k: set(store.read_table(k, columns=["candid"]).column("candid").to_pylist())
              for k in store.list_keys("features/survey=ztf/") if k.endswith("_features.parquet")}  # one per night
    oracle = oracle_labels(pd.read_csv(REPO / "demo" / "labels_cdsxmatch.csv"))
    oracle = oracle[oracle["candid"].isin(set().union(*polled.values()))]
    assert oracle["label"].nunique() == 2 and len(oracle) >= 40
    with grpc_channel(procs["trainer"]) as ch:
        trainer_pb2_grpc.TrainerStub(ch).SubmitLabels(trainer_pb2.SubmitLabelsRequest(labels=[
            trainer_pb2.LabelEvent(candid=int(r.candid), object_id=r.objectId, label=r.label, user="oracle", source="oracle")
            for r in oracle.itertuples()]), timeout=60, metadata=servers.as_user("oracle"))
    out = subprocess.run([SKYSIFT, "round", "--experiment", "e2e", "--model-tag", "galactic"], env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    with grpc_channel(procs["inference"]) as ch:
        stub = inference_pb2_grpc.InferenceStub(ch)
        deadline = time.monotonic() + 60
        while not stub.ListModels(inference_pb2.ListModelsRequest(), timeout=10).models and time.monotonic() < deadline:
            time.sleep(0.5)  # the service polls the registry: no restart
        scored = {k: stub.Score(inference_pb2.ScoreRequest(features_key=k, packed=True), timeout=120) for k in polled}
    champion = {resp.packed[0].model_version for resp in scored.values()}
    assert len(champion) == 1
    from mlflow import MlflowClient

    registered = MlflowClient(env["SKYSIFT_MLFLOW_TRACKING_URI"]).get_model_version_by_alias(
        f"{env['SKYSIFT_MLFLOW_MODEL_PREFIX']}_galactic", "champion")  # on the MLflow server, under our own name
    assert champion == {str(registered.version)}
    for features_key, resp in scored.items():
        assert resp.written.key == str(keys.parse_batch(features_key).sibling("predictions"))
        predictions = store.read_table(resp.written.key)
        assert set(predictions.column("candid").to_pylist()) == polled[features_key]
        assert set(predictions.column("model_version").to_pylist()) == champion


def grpc_channel(proc):

    return servers.channel(proc.port)


def test_bad_requests_get_clear_status(stack):
    import grpc

    from skysift.v1 import features_pb2, features_pb2_grpc, inference_pb2, inference_pb2_grpc

    env, procs = stack
    with servers.channel(procs['features'].port) as ch:
        with pytest.raises(grpc.RpcError) as info:
            features_pb2_grpc.FeaturesStub(ch).ComputeFeatures(
                features_pb2.ComputeFeaturesRequest(alerts_key="alerts/survey=ztf/night=20200101/20200101_000000_alerts.parquet"))
        assert info.value.code() == grpc.StatusCode.NOT_FOUND and "20200101_000000_alerts.parquet" in info.value.details()
    with servers.channel(procs['inference'].port) as ch:
        with pytest.raises(grpc.RpcError) as info:
            inference_pb2_grpc.InferenceStub(ch).ScoreCandids(inference_pb2.ScoreCandidsRequest(candids=[]))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and info.value.details()


def test_sigterm_drains_and_exits_cleanly(s3_server, tmp_path):
    env = {**os.environ, **s3_server.env, "SKYSIFT_STORE_URL": str(tmp_path / "store")}
    proc = servers.start_service("features", env, tmp_path)
    address = f"127.0.0.1:{proc.port}"
    wait_serving(address)
    os.killpg(proc.proc.pid, signal.SIGTERM)
    assert proc.proc.wait(30) == 0
    assert health_status(address, timeout=0.5) == "UNREACHABLE"


def _settings(env: dict) -> config.Settings:
    return config.Settings(**{k.removeprefix("SKYSIFT_").lower(): v for k, v in env.items()
                              if k.startswith("SKYSIFT_") and k.removeprefix("SKYSIFT_").lower() in config.Settings.model_fields})
