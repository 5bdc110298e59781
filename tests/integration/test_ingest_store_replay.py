"""Replay of parquet already in an object store, on the real S3 server (SeaweedFS): a night moved between buckets
row for row and deduplicated, raw packets imported from a bucket, and a night of the store's own alerts sent
through enrichment and features again by `skysift poll --from store://...` without rewriting the alerts."""

from __future__ import annotations

import shutil

from typer.testing import CliRunner

from skysift.cli import app
from skysift.ingest.core import IngestStage
from skysift.ingest.settings import IngestSettings
from skysift.store import keys
from skysift.store.s3 import S3Store
from tests import alert_packets as ap

MULTI = ap.DATA / "ztf" / "fink_labeled" / "avro_more"  # 11 alerts of 2019-11-01, 31 of 2026-03-22
NIGHT = "alerts/survey=ztf/night=20191101/"


def stage(settings, store) -> IngestStage:
    return IngestStage(settings, store, IngestSettings())


def other_bucket(settings, name: str) -> S3Store:
    store = S3Store(f"s3://{name}/archive", settings)
    store.ensure_bucket()
    return store


def test_a_night_moves_between_buckets_row_for_row_and_is_not_copied_twice(s3_settings, tmp_path):
    bucket = f"old-{s3_settings.store_url.split('/')[2]}"
    old = other_bucket(s3_settings, bucket)
    stage(s3_settings, old).poll(replay_path=str(shutil.copytree(MULTI, tmp_path / "a")))
    (source_key,) = old.list_keys(NIGHT)
    store = S3Store(s3_settings.store_url, s3_settings)

    moved = stage(s3_settings, store).poll(replay_path=f"s3://{bucket}/archive/{NIGHT}")
    (batch,) = moved.alerts
    assert batch.key.startswith(NIGHT) and moved.n_dead_letters == 0
    assert store.read_table(batch.key).equals(old.read_table(source_key))

    everything = stage(s3_settings, store).poll(replay_path=f"s3://{bucket}/archive/alerts/")
    assert everything.n_duplicates == 11 and everything.n_alerts == 31  # the 2019 night was there already
    assert [keys.parse_batch(b.key).night for b in everything.alerts] == ["20260322"]


def test_raw_packets_in_a_bucket_are_decoded_like_files(s3_settings):
    bucket = f"raw-{s3_settings.store_url.split('/')[2]}"
    raw = other_bucket(s3_settings, bucket)
    for path in sorted(MULTI.glob("*.avro")):
        raw.put_bytes(f"ztf_public/{path.name}", path.read_bytes())
    store = S3Store(s3_settings.store_url, s3_settings)
    result = stage(s3_settings, store).poll(replay_path=f"s3://{bucket}/archive/ztf_public/", max_alerts=1)
    assert (result.n_messages, result.n_alerts) == (1, 11)  # the first container, whole
    rest = stage(s3_settings, store).poll(replay_path=f"s3://{bucket}/archive/ztf_public/")
    assert (rest.n_messages, rest.n_alerts) == (1, 31)


def test_poll_from_store_runs_a_past_night_through_the_stages_again_without_rewriting_it(s3_settings, tmp_path,
                                                                                        monkeypatch, empty_mlflow_uri):
    monkeypatch.setenv("SKYSIFT_MLFLOW_TRACKING_URI", empty_mlflow_uri)
    monkeypatch.setenv("SKYSIFT_SECRETS_DIR", str(tmp_path / "no-secrets"))
    runner = CliRunner()
    first = runner.invoke(app, ["poll", "--in-process", "--from", str(shutil.copytree(MULTI, tmp_path / "a"))])
    assert first.exit_code == 0, first.output
    store = S3Store(s3_settings.store_url, s3_settings)
    (alerts_key,) = store.list_keys(NIGHT)
    alerts = store.get_bytes(alerts_key)
    features_key = str(keys.parse_batch(alerts_key).sibling("features"))
    store.delete(features_key)  # as if the feature set changed: this night's features must be computed again

    again = runner.invoke(app, ["poll", "--in-process", "--from", f"{s3_settings.store_url}/{NIGHT}"])
    assert again.exit_code == 0, again.output
    assert again.output.startswith("polled 1 messages: 11 alerts kept, 0 rejected by filter, 0 duplicates")
    assert alerts_key in again.output and features_key in again.output
    assert store.get_bytes(alerts_key) == alerts and store.list_keys(NIGHT) == [alerts_key]
    assert store.read_table(features_key).num_rows == 11
