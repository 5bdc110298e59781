"""Replay from an object store (store://), alert-bounded replays of multi-alert containers, and alerts landing under
their own observing night, over real packets and a real local store."""

from __future__ import annotations

import re
import shutil
from datetime import datetime, timedelta, timezone

import numpy as np
import pyarrow as pa
import pytest

from skysift.errors import InvalidArgument
from skysift.ingest import core
from skysift.ingest.core import observing_night
from skysift.ingest.settings import IngestSettings
from skysift.store import keys
from tests import alert_packets as ap
from tests.unit.test_ingest_core import freeze_poll_time, stage

MULTI = ap.DATA / "ztf" / "fink_labeled" / "avro_more"  # two real containers: 11 alerts (2019-11-01), 31 (2026)


def jd_of(when: datetime) -> float:
    return when.timestamp() / 86400.0 + core.JD_UNIX_EPOCH


def night_of_record(rec: dict) -> str:
    """The UTC date of a ZTF alert's detection, computed here with datetime (not with the code under test)."""
    when = datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(days=rec["candidate"]["jd"] - core.JD_UNIX_EPOCH)
    return when.strftime("%Y%m%d")


def alerts_keys(store) -> list[str]:
    return [k for k in store.list_keys("alerts/") if k.endswith("_alerts.parquet")]


def test_observing_night_is_the_utc_date_for_ztf_and_dayobs_for_rubin():
    poll = datetime(2026, 1, 1, 12, tzinfo=timezone.utc)
    at = [datetime(2019, 11, 5, 3, 0, tzinfo=timezone.utc), datetime(2019, 11, 5, 23, 59, 59, tzinfo=timezone.utc)]
    jd = np.array([jd_of(t) for t in at] + [np.nan])
    assert observing_night(jd, "ztf", poll).tolist() == ["20191105", "20191105", "20260101"]
    # Rubin's dayObs is the date in UTC-12h: a Chilean night crossing UTC midnight is one night
    assert observing_night(jd, "lsst", poll).tolist() == ["20191104", "20191105", "20260101"]


def test_alerts_land_under_their_own_night_one_file_per_night_with_the_poll_time_as_stem(local_settings, local_store,
                                                                                         tmp_path, monkeypatch):
    freeze_poll_time(monkeypatch, datetime(2026, 3, 27, 12, 0, 0, tzinfo=timezone.utc))
    d = shutil.copytree(ap.DATA / "ztf" / "fink_labeled" / "avro", tmp_path / "archive")
    recs = [r for p in sorted(d.rglob("*.avro")) for r in ap.records(p)[1]]
    want: dict[str, set[int]] = {}
    for rec in recs:
        want.setdefault(night_of_record(rec), set()).add(rec["candid"])
    result = stage(local_settings, local_store).poll(replay_path=str(d))

    assert len(want) > 1 and result.n_alerts == len(recs)
    got = {}
    for batch in result.alerts:
        key = keys.parse_batch(batch.key, "alerts")
        got[key.night] = set(local_store.read_table(batch.key).column("candid").to_pylist())
        assert key.stem == "20260327_120000"  # the poll's time: stages trace a batch by stem, as before
    assert got == want


def test_a_backfill_replayed_again_a_year_later_is_found_in_its_night_and_not_written_twice(
        local_settings, local_store, tmp_path, monkeypatch):
    d = shutil.copytree(MULTI, tmp_path / "archive")
    first = stage(local_settings, local_store).poll(replay_path=str(d))
    later = datetime.now(timezone.utc) + timedelta(days=365)  # far past dedup_days of the first poll's date

    class Later(datetime):
        @classmethod
        def now(cls, tz=None):
            return later

    monkeypatch.setattr(core, "datetime", Later)
    again = stage(local_settings, local_store).poll(replay_path=str(shutil.copytree(d, tmp_path / "again")))
    assert first.n_alerts == 42 and again.n_alerts == 0 and again.n_duplicates == 42 and again.alerts == []


def test_max_alerts_finishes_the_container_that_crosses_it_and_leaves_the_rest_for_the_next_poll(
        local_settings, local_store, tmp_path):
    d = shutil.copytree(MULTI, tmp_path / "archive")
    s = stage(local_settings, local_store)
    first, second, third = (s.poll(replay_path=str(d), max_alerts=5) for _ in range(3))
    assert (first.n_messages, first.n_alerts) == (1, 11)  # the 11-alert container, whole
    assert (second.n_messages, second.n_alerts) == (1, 31)
    assert third.n_messages == 0
    assert sorted(c for k in alerts_keys(local_store) for c in local_store.read_table(k)["candid"].to_pylist()) == \
        sorted(r["candid"] for p in MULTI.glob("*.avro") for r in ap.records(p)[1])


def test_store_replay_passes_a_nights_batches_on_unchanged_and_walks_them_with_a_cursor(local_settings, local_store,
                                                                                       tmp_path):
    s = stage(local_settings, local_store)
    s.poll(replay_path=str(shutil.copytree(ap.DATA / "ztf" / "fink_labeled" / "avro", tmp_path / "a")))
    night = "20211122"
    before = {k: local_store.get_bytes(k) for k in local_store.list_keys()}
    prefix = f"alerts/survey=ztf/night={night}/"
    (stored,) = [k for k in alerts_keys(local_store) if k.startswith(prefix)]

    result = s.poll(replay_path=f"store://{prefix}")
    assert [b.key for b in result.alerts] == [stored] and result.n_alerts == result.alerts[0].rows == 110
    assert result.n_messages == 1 and result.n_duplicates == 0 and result.cutouts == []
    assert before == {k: local_store.get_bytes(k) for k in before}  # nothing rewritten
    (new,) = set(local_store.list_keys()) - set(before)
    assert new.startswith("state/ingest/replay/")
    assert s.poll(replay_path=f"store://{prefix}").n_messages == 0  # the cursor moved past it


def test_a_stores_alerts_directory_replayed_into_another_store_keeps_every_row_as_it_was(local_settings, local_store,
                                                                                         tmp_path):
    from skysift.store import open_store

    s = stage(local_settings, local_store)
    s.poll(replay_path=str(shutil.copytree(MULTI, tmp_path / "a")))
    (source_key,) = [k for k in alerts_keys(local_store) if "night=20191101" in k]
    other = open_store(str(tmp_path / "other"))
    result = stage(local_settings, other).poll(replay_path=str(local_store.root / source_key.rsplit("/", 1)[0]))

    (batch,) = result.alerts
    assert batch.key.startswith("alerts/survey=ztf/night=20191101/") and result.n_dead_letters == 0
    copied, original = other.read_table(batch.key), local_store.read_table(source_key)
    assert copied.equals(original)
    again = stage(local_settings, other).poll(replay_path=str(tmp_path / "store" / "alerts"))
    assert again.n_duplicates == original.num_rows and again.n_alerts == 31  # the 2026 night was not copied yet


def test_other_stages_files_under_a_replayed_directory_are_skipped(local_settings, local_store, tmp_path):
    d = shutil.copytree(MULTI, tmp_path / "archive")
    (d / "20260101_000000_features.parquet").write_bytes(core.parquet_bytes(pa.table({"candid": [1]})))
    result = stage(local_settings, local_store).poll(replay_path=str(d))
    assert result.n_messages == 2 and result.n_dead_letters == 0 and result.n_alerts == 42


def test_an_alerts_file_of_an_unknown_survey_is_a_dead_letter_and_the_replay_moves_on(local_settings, local_store,
                                                                                      tmp_path):
    written = stage(local_settings, local_store).poll(replay_path=str(MULTI)).alerts[0]
    table = local_store.read_table(written.key)
    d = tmp_path / "odd"
    d.mkdir()
    for name, survey in (("a.parquet", "../../x"), ("b.parquet", "ZTF")):  # not a key part, not a survey of skysift
        odd = table.set_column(table.column_names.index("survey"), table.schema.field("survey"),
                               pa.array([survey] * table.num_rows))
        (d / name).write_bytes(core.parquet_bytes(odd))
    result = stage(local_settings, local_store).poll(replay_path=str(d))
    assert result.n_alerts == 0 and result.n_dead_letters == 2 and result.dlq_key
    assert stage(local_settings, local_store).poll(replay_path=str(d)).n_messages == 0  # the cursor moved past them


def test_a_replayed_file_that_cannot_be_read_is_named_in_the_error_not_the_store(local_settings, local_store, tmp_path):
    from skysift.errors import Unavailable
    from skysift.ingest.replay import open_replay

    d = shutil.copytree(MULTI, tmp_path / "archive")
    source = open_replay(str(d), local_store, local_settings)
    gone = sorted(d.rglob("*.avro"))[0]
    gone.unlink()  # between the listing and the read, e.g. moved away by an archiver
    with pytest.raises(Unavailable, match=re.escape(f"replay source {d} unavailable: FileNotFoundError")) as failed:
        source.fetch(1000, 30)
    assert "object store" not in str(failed.value)


@pytest.mark.parametrize("path, message", [
    ("store://../outside/", "relative, without '..'"),
    ("store:///etc/", "relative, without '..'"),
    ("store://alerts/survey=ztf/night=19990101/", "nothing to replay"),
])
def test_bad_store_replay_paths_are_invalid_arguments(local_settings, local_store, path, message):
    with pytest.raises(InvalidArgument, match=message):
        stage(local_settings, local_store).poll(replay_path=path)


def test_grpc_replay_paths_may_name_the_store_its_own_bucket_or_listed_buckets_only():
    settings = IngestSettings(replay_buckets="archive-2019, moved")
    own = "s3://skysift/prod"
    assert settings.check_replay_path("store://alerts/survey=ztf/night=20250101/", own).startswith("store://")
    for path in ("s3://skysift/prod/alerts/", "s3://archive-2019/alerts/", "s3://moved"):
        assert settings.check_replay_path(path, own) == path
    for path in ("s3://skysift-other/alerts/", "s3://secrets/keys/"):
        with pytest.raises(InvalidArgument, match="SKYSIFT_INGEST_REPLAY_BUCKETS"):
            settings.check_replay_path(path, own)


def test_a_file_added_before_the_cursor_between_polls_is_read_and_none_twice(local_settings, local_store, tmp_path):
    """A backfill writes into an old night's folder: the new file sorts before what was read already."""
    d = tmp_path / "archive"
    (d / "night=2").mkdir(parents=True)
    first, second = sorted(MULTI.rglob("*.avro"))
    shutil.copy(second, d / "night=2" / second.name)
    s = stage(local_settings, local_store)
    assert s.poll(replay_path=str(d)).n_messages == 1
    (d / "night=1").mkdir()
    shutil.copy(first, d / "night=1" / first.name)
    again = s.poll(replay_path=str(d))
    assert again.n_messages == 1 and again.n_alerts == len(ap.records(first)[1])
    assert s.poll(replay_path=str(d)).n_messages == 0


def test_a_store_replay_skips_bookkeeping_and_dead_letters(local_settings, local_store):
    from skysift.ingest.replay import open_replay

    stage(local_settings, local_store).poll(replay_path=str(MULTI))
    local_store.put_bytes("dlq/ingest/night=20260101/x.parquet", b"PAR1")
    assert any(k.startswith("state/") for k in local_store.list_keys(""))
    names = open_replay("store://", local_store, local_settings).names
    assert names and all(k.startswith("alerts/") for k in names)


def test_a_replay_directory_is_listed_again_only_where_it_changed(tmp_path):
    """Each poll lists its replay directory: unchanged directories come from the cache (stat-ed, not listed), a
    file added anywhere is found at once, and the order stays that of sorted paths."""
    import os
    import time

    from skysift.ingest.replay import DirectoryListings

    d = tmp_path / "archive"
    for night in ("night=1", "night=2", "night=1-late"):
        (d / night).mkdir(parents=True)
        for name in ("b.avro", "a.avro", "notes.txt", ".tmp.avro", "x_features.parquet"):
            (d / night / name).write_bytes(b"")
    (d / "top.bin").write_bytes(b"")
    settled = time.time() - 60  # as if written a minute ago: the listings may be cached
    for path in [d, *d.iterdir()]:
        os.utime(path, (settled, settled))

    def expected():  # the previous listing: every packet file under d, as sorted Paths
        return [str(p) for p in sorted(p for p in d.rglob("*") if p.is_file() and p.name.endswith((".avro", ".bin"))
                                       and not p.name.startswith(".") and "_features" not in p.name)]

    listings = DirectoryListings()
    assert listings.files(str(d)) == expected() and listings.scanned == 4
    assert listings.files(str(d)) == expected() and listings.scanned == 0
    (d / "night=2" / "c.avro").write_bytes(b"")
    assert listings.files(str(d)) == expected() and listings.scanned == 1
    assert str(d / "night=2" / "c.avro") in listings.files(str(d))  # recently changed: listed again, never stale
    (d / "night=3").mkdir()
    (d / "night=3" / "a.avro").write_bytes(b"")
    assert listings.files(str(d)) == expected()
