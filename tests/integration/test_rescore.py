"""When the champion moves, the next poll re-scores the earlier batches with the new version (level-triggered, as
the other stages), on a real MLflow server and a real S3 server, in one process and through the real gRPC services:
every alert ends with one prediction row per version that was champion, the earlier version's rows unchanged."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import uuid
from collections import Counter
from contextlib import contextmanager

import pytest

from skysift import config, pipeline
from skysift.store import open_store
from tests import servers
from tests.inference_support import base_model, other_model, point_alias, registered_name

DEMO = "demo/alerts/ztf/fink-client_ztf_ftransfer"


def predictions(store) -> dict[str, dict[int, float]]:
    """model version -> candid -> probability of the galactic class, over every predictions file."""
    out: dict[str, dict[int, float]] = {}
    rows = Counter()
    for key in store.list_keys("predictions/"):
        table = store.read_table(key).to_pylist()
        for row in table:
            rows[(row["model_version"], row["candid"])] += 1
            out.setdefault(row["model_version"], {})[row["candid"]] = row["prob_galactic"]
    assert set(rows.values()) == {1}  # one row per version and alert
    return out


def status_line(start: str) -> str:
    """The line of `skysift status` (run as a command, with this test's environment) that starts with ``start``."""
    out = subprocess.run([sys.executable, "-m", "skysift.cli", "status"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return next(line for line in out.stdout.splitlines() if line.startswith(start))


@contextmanager
def in_process(settings):
    yield lambda: pipeline.InProcessStages(config.load())  # each poll a new process, as the CronJob runs it


@contextmanager
def through_grpc(settings):
    """The four pipeline services on one loopback server; Inference follows the alias every second."""
    from skysift.enrichment.service import EnrichmentServicer
    from skysift.features.service import FeaturesServicer
    from skysift.inference.core import InferenceStage
    from skysift.inference.service import InferenceServicer
    from skysift.ingest.service import IngestServicer
    from skysift.v1 import enrichment_pb2_grpc, features_pb2_grpc, inference_pb2_grpc, ingest_pb2_grpc

    store = open_store(settings=settings)
    inference = InferenceStage(settings, store)
    inference.start_polling()
    try:
        with servers.serving(settings, {
                "Ingest": (ingest_pb2_grpc.add_IngestServicer_to_server, IngestServicer(settings, store)),
                "Enrichment": (enrichment_pb2_grpc.add_EnrichmentServicer_to_server, EnrichmentServicer(settings, store)),
                "Features": (features_pb2_grpc.add_FeaturesServicer_to_server, FeaturesServicer(settings, store)),
                "Inference": (inference_pb2_grpc.add_InferenceServicer_to_server, InferenceServicer(inference))}) as r:
            address = f"127.0.0.1:{r.port}"
            yield lambda: pipeline.GrpcStages(settings.model_copy(update={
                f"{service}_address": address for service in ("ingest", "enrichment", "features", "inference")}))
    finally:
        inference.close()


@pytest.mark.parametrize("run", [in_process, through_grpc], ids=["in-process", "grpc"])
def test_when_the_champion_moves_the_next_poll_rescores_earlier_batches_and_keeps_the_earlier_predictions(
        run, mlflow_server, s3_settings, tmp_path, monkeypatch):
    uri = mlflow_server.env["SKYSIFT_MLFLOW_TRACKING_URI"]
    alias = f"rs{uuid.uuid4().hex[:8]}"
    for name, value in {"SKYSIFT_MLFLOW_TRACKING_URI": uri, "SKYSIFT_INFERENCE_ALIAS": alias,
                        "SKYSIFT_INFERENCE_MODEL_TAGS": "galactic", "SKYSIFT_INFERENCE_POLL_SECONDS": "1",
                        "SKYSIFT_INGEST_CATCHUP_GRACE_S": "0", "SKYSIFT_INGEST_REPLAY_ROOT": str(tmp_path)}.items():
        monkeypatch.setenv(name, value)
    settings = config.load()
    store = open_store(settings=settings)
    v1, v2 = base_model(uri), other_model(uri)
    point_alias(uri, "galactic", alias, v1)
    packets = str(shutil.copytree(DEMO, tmp_path / "packets"))

    with run(settings) as stages:
        first = pipeline.run_poll(stages(), replay_path=packets)
        n_batches = len(store.list_keys("alerts/"))
        assert first.counts["alerts"] > 0 and n_batches > 0 and not first.caught_up
        before = predictions(store)
        assert set(before) == {v1}

        point_alias(uri, "galactic", alias, v2)  # a better round moved the champion
        probe, moved = stages(), [(registered_name("galactic"), v2)]
        deadline = time.monotonic() + 30
        while (champions := probe.champions()) != moved and time.monotonic() < deadline:
            time.sleep(0.5)  # the inference service notices within its poll interval
        assert champions == moved
        if run is in_process:  # `skysift status` counts what waits for the new champion (once: it is a new process)
            assert f"re-scoring: {n_batches} alerts batches not yet scored" in status_line("re-scoring")
        second = pipeline.run_poll(stages(), replay_path=packets)  # nothing new to ingest: re-scoring only
        assert second.counts["alerts"] == 0 and second.n_behind == n_batches
        assert len(second.caught_up) == n_batches and all(line.endswith(": predictions written")
                                                           for line in second.caught_up)
        after = predictions(store)
        assert set(after) == {v1, v2} and after[v1] == before[v1]  # nothing lost
        assert after[v2].keys() == before[v1].keys()  # every alert scored by the new champion, once
        assert after[v2] != after[v1]  # by the new model, not the old one again

        assert pipeline.run_poll(stages(), replay_path=packets).n_behind == 0  # up to date
        if run is in_process:
            assert status_line("re-scoring").startswith("re-scoring: 0 alerts batches")
        assert predictions(store) == after
