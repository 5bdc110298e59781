"""Level-triggered stages on a real S3 server: a batch stranded between stages (the server stopped right after the
poll's alerts file and candid index were written, so ingest committed and enrichment failed) and batches polled
before any model existed are brought up to date by later polls, with no command run by hand; every alert ends in
every stage's output exactly once."""

from __future__ import annotations

import shutil
from collections import Counter

import pytest

from skysift.errors import Unavailable
from skysift.store import open_store
from tests import servers
from tests.integration.test_faults_ingest import Relay, cut_before

DEMO = "demo/alerts/ztf/fink-client_ztf_ftransfer"


def candids_by_stage(store) -> dict[str, Counter]:
    out = {}
    for stage in ("alerts", "enriched", "features", "predictions"):
        counts = Counter()
        for key in store.list_keys(f"{stage}/"):
            counts.update(store.read_table(key, columns=["candid"]).column("candid").to_pylist())
        out[stage] = counts
    return out


def status() -> str:
    from typer.testing import CliRunner

    from skysift.cli import app

    out = CliRunner().invoke(app, ["status"])
    assert out.exit_code == 0, out.output
    return out.output


def test_a_batch_stranded_between_stages_and_one_polled_before_any_model_are_caught_up(tmp_path, monkeypatch, empty_mlflow_uri):
    from skysift import config, pipeline
    from tests.inference_support import fink_batch, galactic_target, register_model

    s3 = servers.start_s3(tmp_path / "s3")
    relay = Relay(s3.port)
    try:
        for name, value in {**s3.env, "SKYSIFT_S3_ENDPOINT_URL": f"http://127.0.0.1:{relay.port}",
                            "SKYSIFT_STORE_URL": "s3://catchup/skysift", "SKYSIFT_INGEST_CATCHUP_GRACE_S": "0",
                            "SKYSIFT_MLFLOW_TRACKING_URI": empty_mlflow_uri,
                            "SKYSIFT_INFERENCE_MODEL_TAGS": "galactic"}.items():
            monkeypatch.setenv(name, value)
        settings = config.load()
        store = open_store(settings=settings)
        store.ensure_bucket()
        packets = shutil.copytree(DEMO, tmp_path / "packets")
        stages = pipeline.InProcessStages(settings)
        fired = cut_before(stages.store, relay, "PutObject", "enriched/", action=s3.stop)

        with pytest.raises(Unavailable):
            pipeline.run_poll(stages, replay_path=str(packets))
        assert fired and s3.proc.poll() is not None
        s3 = servers.start_s3(tmp_path / "s3")  # the same data, new ports: the relay keeps the endpoint
        relay.target = s3.port
        stranded = candids_by_stage(store)
        assert stranded["alerts"] and not stranded["enriched"]  # ingest committed, nothing after it ran
        n_batches = len(store.list_keys("alerts/"))
        assert f"behind: {n_batches} alerts batches" in status()

        report = pipeline.run_poll(stages, replay_path=str(packets))  # the replay has nothing new: catch-up only
        assert report.counts["alerts"] == 0 and report.n_behind == len(store.list_keys("alerts/")) > 0
        assert all("enriched, features written (predictions wait: no model" in line for line in report.caught_up)
        after = candids_by_stage(store)
        assert after["enriched"] == after["features"] == stranded["alerts"]
        assert set(after["alerts"].values()) == {1} and not after["predictions"]

        alerts, features = fink_batch()  # a champion appears (another round, another process)
        register_model(settings.mlflow_tracking_uri, "galactic", features, galactic_target(alerts))
        stages = pipeline.InProcessStages(settings)  # the next hourly poll: a new process, as the CronJob runs it
        report = pipeline.run_poll(stages, replay_path=str(packets))
        assert report.caught_up and all(line.endswith("predictions written") for line in report.caught_up)
        final = candids_by_stage(store)
        assert final["predictions"] == final["features"] == final["enriched"] == final["alerts"]
        assert set(final["alerts"].values()) == {1}

        assert pipeline.run_poll(stages, replay_path=str(packets)).n_behind == 0  # nothing left behind
        shown = status()
        assert "behind: 0 alerts batches" in shown and "dead letters: 0 files" in shown
    finally:
        relay.down()
        s3.stop()
