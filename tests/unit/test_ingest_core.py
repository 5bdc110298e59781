"""IngestStage over the replay source and a real local store: files, cursor, dedup, DLQ, filters, errors."""

from __future__ import annotations

import shutil
from datetime import datetime, timezone

import pyarrow.compute as pc
import pytest

from skysift.errors import InvalidArgument, Unavailable
from skysift.ingest import core
from skysift.ingest.core import IngestStage
from skysift.ingest.settings import IngestSettings
from skysift.store import keys
from tests import alert_packets as ap


@pytest.fixture
def replay_dir(tmp_path):
    """Real ZTF (Fink) containers and Rubin v9 containers, as files."""
    d = tmp_path / "packets"
    (d / "ztf").mkdir(parents=True)
    (d / "lsst").mkdir()
    for p in ap.FINK_CONTAINERS[:3]:
        shutil.copy(p, d / "ztf" / p.name)
    for p in ap.RUBIN_V9[:4]:
        shutil.copy(p, d / "lsst" / p.name)
    return d


def expected_candids(directory) -> set[int]:
    out = set()
    for p in directory.rglob("*.avro"):
        for rec in ap.records(p)[1]:
            out.add(rec.get("candid") or rec.get("diaSourceId") or rec["candidate"]["candid"])
    return out


def stage(settings, store, **kw) -> IngestStage:
    return IngestStage(settings, store, IngestSettings(**kw))


def freeze_poll_time(monkeypatch, when: datetime) -> None:
    """Polls read the clock through ``core.datetime``: make every poll happen at ``when``."""

    class Frozen(datetime):
        @classmethod
        def now(cls, tz=None):
            return when

    monkeypatch.setattr(core, "datetime", Frozen)


def all_candids(store) -> list[int]:
    return [c for k in store.list_keys("alerts/") for c in store.read_table(k, columns=["candid"]).column("candid").to_pylist()]


def test_poll_writes_one_alerts_file_per_survey(local_settings, local_store, replay_dir):
    result = stage(local_settings, local_store).poll(replay_path=str(replay_dir))
    assert {b.survey for b in result.alerts} == {"ztf", "lsst"}
    for batch in result.alerts:
        assert keys.parse_batch(batch.key, "alerts").survey == batch.survey
        assert local_store.read_table(batch.key).num_rows == batch.rows
    assert sorted(all_candids(local_store)) == sorted(expected_candids(replay_dir))
    assert result.n_messages == 7 and result.n_alerts == len(expected_candids(replay_dir)) and result.dlq_key is None


def test_replay_cursor_advances_only_past_what_was_written(local_settings, local_store, replay_dir):
    s = stage(local_settings, local_store)
    first = s.poll(replay_path=str(replay_dir), max_alerts=2)
    rest = s.poll(replay_path=str(replay_dir))
    again = s.poll(replay_path=str(replay_dir))
    assert first.n_messages == 2 and rest.n_messages == 5 and again.n_messages == 0
    assert sorted(all_candids(local_store)) == sorted(expected_candids(replay_dir))


def test_redelivered_alerts_are_counted_as_duplicates(local_settings, local_store, replay_dir, tmp_path):
    s = stage(local_settings, local_store)
    first = s.poll(replay_path=str(replay_dir))
    copy = shutil.copytree(replay_dir, tmp_path / "again")
    second = s.poll(replay_path=str(copy))
    assert second.n_alerts == 0 and second.alerts == [] and second.n_duplicates == first.n_alerts


def test_a_stage_remembers_its_candids_and_still_sees_another_replicas_files(local_settings, local_store, replay_dir,
                                                                             tmp_path, monkeypatch):
    mine, other = stage(local_settings, local_store), stage(local_settings, local_store)
    first = mine.poll(replay_path=str(replay_dir / "ztf"))
    other.poll(replay_path=str(replay_dir / "lsst"))
    read = []
    real_read = local_store.read_table
    monkeypatch.setattr(local_store, "read_table", lambda key, **kw: read.append(key) or real_read(key, **kw))
    again = mine.poll(replay_path=str(shutil.copytree(replay_dir, tmp_path / "again")))
    assert again.n_alerts == 0 and again.n_duplicates == first.n_alerts + len(expected_candids(replay_dir / "lsst"))
    assert read and all("survey=lsst" in key for key in read)  # its own files' candids came from memory


def test_lost_candid_cache_is_rebuilt_from_the_alerts_files(local_settings, local_store, replay_dir, tmp_path):
    s = stage(local_settings, local_store)
    first = s.poll(replay_path=str(replay_dir))
    for key in local_store.list_keys(core.INDEX_PREFIX):  # as if the poll died right after its alerts files
        local_store.delete(key)
    second = s.poll(replay_path=str(shutil.copytree(replay_dir, tmp_path / "again")))
    assert second.n_alerts == 0 and len(local_store.list_keys(core.INDEX_PREFIX)) == len(first.alerts)


def test_undecodable_files_go_to_the_dlq_and_the_rest_is_written(local_settings, local_store, replay_dir):
    expected = expected_candids(replay_dir)
    good = next((replay_dir / "ztf").glob("*.avro"))
    truncated = good.read_bytes()[:5000]
    (replay_dir / "ztf" / "zz_truncated.avro").write_bytes(truncated)
    result = stage(local_settings, local_store).poll(replay_path=str(replay_dir))
    dlq = local_store.read_table(result.dlq_key)
    assert result.n_dead_letters == 1 and dlq.column("raw").to_pylist() == [truncated]
    assert dlq.column("source").to_pylist() == [str(replay_dir / "ztf" / "zz_truncated.avro")]
    assert "truncated" in dlq.column("error")[0].as_py()
    assert sorted(all_candids(local_store)) == sorted(expected)


def test_fink_vra_filter_counts_what_it_rejects(local_settings, local_store, tmp_path):
    d = shutil.copytree(ap.DATA / "ztf" / "fink_labeled" / "avro", tmp_path / "fink")
    result = stage(local_settings, local_store).poll(replay_path=str(d), filter_name="fink_vra")
    total = stage(local_settings, local_store).poll(replay_path=str(shutil.copytree(d, tmp_path / "all")))
    assert result.n_rejected > 0 and result.n_alerts + result.n_rejected + result.n_duplicates == len(expected_candids(d))
    kept = local_store.read_table(result.alerts[0].key)
    assert pc.all(pc.greater(kept.column("magpsf"), 19.5)).as_py() and set(kept.column("cdsxmatch").to_pylist()) == {"Unknown"}
    assert total.n_duplicates == result.n_alerts  # rejected alerts were not written, so a plain poll keeps them


def test_cutouts_are_written_beside_the_alerts_when_asked(local_settings, local_store, replay_dir):
    result = stage(local_settings, local_store).poll(replay_path=str(replay_dir), keep_cutouts=True)
    for alerts, cutouts in zip(sorted(result.alerts, key=lambda b: b.key), sorted(result.cutouts, key=lambda b: b.key)):
        assert cutouts.key == str(keys.parse_batch(alerts.key).sibling("cutouts"))
        table = local_store.read_table(cutouts.key)
        assert sorted(table.column("candid").to_pylist()) == sorted(local_store.read_table(alerts.key).column("candid").to_pylist())
        assert all(b for b in table.column("cutout_science").to_pylist())


def test_two_polls_in_one_second_get_distinct_files(local_settings, local_store, replay_dir, tmp_path, monkeypatch):
    freeze_poll_time(monkeypatch, datetime(2026, 3, 27, 12, 0, 0, tzinfo=timezone.utc))
    s = stage(local_settings, local_store)
    other = tmp_path / "other"
    other.mkdir()
    shutil.move(str(replay_dir / "lsst"), other / "lsst")
    a, b = s.poll(replay_path=str(replay_dir)), s.poll(replay_path=str(other))
    assert len({x.key for x in a.alerts + b.alerts}) == len(a.alerts + b.alerts)
    assert all(keys.parse_batch(x.key).stem.startswith("20260327_120000") for x in a.alerts + b.alerts)


def test_missing_replay_path_is_an_invalid_argument(local_settings, local_store, tmp_path):
    with pytest.raises(InvalidArgument, match="does not exist"):
        stage(local_settings, local_store).poll(replay_path=str(tmp_path / "nowhere"))


def test_unknown_filter_is_an_invalid_argument(local_settings, local_store, replay_dir):
    with pytest.raises(InvalidArgument, match="fink_vra"):
        stage(local_settings, local_store).poll(replay_path=str(replay_dir), filter_name="nope")


def test_store_down_fails_the_poll_with_unavailable(replay_dir, monkeypatch):
    from skysift import config
    from skysift.store.s3 import S3Store
    from tests.servers import free_port

    monkeypatch.setenv("SKYSIFT_S3_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("SKYSIFT_STORE_URL", "s3://down/store")
    monkeypatch.setenv("SKYSIFT_S3_ACCESS_KEY_ID", "skysift-test-access")  # credentials set: only the server is gone
    monkeypatch.setenv("SKYSIFT_S3_SECRET_ACCESS_KEY", "skysift-test-secret")
    settings = config.load()
    with pytest.raises(Unavailable, match="unreachable|unavailable"):
        stage(settings, S3Store(settings.store_url, settings)).poll(replay_path=str(replay_dir))


def test_alerts_files_use_dictionaries_for_text_columns_only(local_settings, local_store, replay_dir, tmp_path):
    import pyarrow.parquet as pq

    batch = stage(local_settings, local_store).poll(replay_path=str(replay_dir)).alerts[0]
    path = tmp_path / "alerts.parquet"
    path.write_bytes(local_store.get_bytes(batch.key))
    row_group = pq.ParquetFile(path).metadata.row_group(0)
    encodings = {row_group.column(i).path_in_schema: row_group.column(i).encodings for i in range(row_group.num_columns)}
    assert any("DICTIONARY" in e for e in encodings["band"])
    assert not any("DICTIONARY" in e for e in encodings["candid"] + encodings["det_jd.list.element"])
