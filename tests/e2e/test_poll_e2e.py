"""The foundation's end-to-end path: five real gRPC services as processes, a real S3 server, real alerts."""

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
def stack(s3_server, tmp_path_factory):
    """The five services on loopback, sharing a fresh S3 bucket (no MLflow model registered)."""
    from skysift.store.s3 import S3Store

    work = tmp_path_factory.mktemp("e2e")
    env = {**os.environ, **s3_server.env, "SKYSIFT_STORE_URL": "s3://e2e/store",
           "SKYSIFT_MLFLOW_TRACKING_URI": f"sqlite:///{work}/mlflow.db"}
    S3Store(env["SKYSIFT_STORE_URL"], _settings(env)).ensure_bucket()
    procs = {}
    try:
        for service in SERVICES:
            procs[service] = servers.start_service(service, env, work)
            env.update(procs[service].env)
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


def test_bad_requests_get_clear_status(stack):
    import grpc

    from skysift.v1 import features_pb2, features_pb2_grpc, inference_pb2, inference_pb2_grpc

    env, procs = stack
    with grpc.insecure_channel(f"127.0.0.1:{procs['features'].port}") as ch:
        with pytest.raises(grpc.RpcError) as info:
            features_pb2_grpc.FeaturesStub(ch).ComputeFeatures(
                features_pb2.ComputeFeaturesRequest(alerts_key="alerts/survey=ztf/night=20200101/20200101_000000_alerts.parquet"))
        assert info.value.code() == grpc.StatusCode.NOT_FOUND and "20200101_000000_alerts.parquet" in info.value.details()
    with grpc.insecure_channel(f"127.0.0.1:{procs['inference'].port}") as ch:
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
