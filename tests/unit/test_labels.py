"""LabelStore on a local store: validation, latest-wins, history, CSV import/export, concurrent writers."""

from __future__ import annotations

import csv
import threading
from datetime import UTC, datetime, timedelta

import pytest

from skysift.errors import InvalidArgument
from skysift.trainer.labels import EVENTS_PREFIX, LabelEvent, LabelStore

T0 = datetime(2025, 6, 2, 12, 0, tzinfo=UTC)


def test_submit_assigns_ids_and_timestamps(local_store):
    labels = LabelStore(local_store)
    ids = labels.submit([LabelEvent(candid=1786385875815010010, label="galactic", user="heloise")])
    assert len(ids) == 1 and len(ids[0]) == 32
    (event,) = labels.history()
    assert event.event_id == ids[0] and event.timestamp.tzinfo is not None and event.source == "human"


@pytest.mark.parametrize(
    "event, message",
    [
        (LabelEvent(candid=1, label="supernova", user="u"), "unknown label 'supernova'"),
        (LabelEvent(candid=1, label="bogus", user=" "), "no user"),
        (LabelEvent(candid=0, label="bogus", user="u"), "positive integer"),
        (LabelEvent(candid=1, label="bogus", user="u", source="robot"), "unknown label source"),
        (LabelEvent(candid=1, label="bogus", user="u", model_tag="nope"), "unknown model tag"),
        (LabelEvent(candid=1, label="bogus", user="u", timestamp=datetime.now(UTC) + timedelta(days=1)), "in the future"),
    ],
)
def test_invalid_events_are_rejected_and_nothing_is_written(local_store, event, message):
    labels = LabelStore(local_store)
    good = LabelEvent(candid=2, label="real", user="u")
    with pytest.raises(InvalidArgument, match=message):
        labels.submit([good, event])
    assert local_store.list_keys(EVENTS_PREFIX) == []


def test_latest_event_wins_and_history_keeps_all(local_store):
    labels = LabelStore(local_store)
    labels.submit([LabelEvent(candid=7, label="galactic", user="a", timestamp=T0)])
    labels.submit([LabelEvent(candid=7, label="extragalactic", user="b", timestamp=T0 + timedelta(minutes=1))])
    labels.submit([LabelEvent(candid=8, label="skip", user="a", timestamp=T0 + timedelta(minutes=2))])
    latest = labels.latest()
    assert latest[7].label == "extragalactic" and latest[7].user == "b"
    assert set(labels.latest(candids=[8])) == {8}
    assert [e.label for e in labels.history(user="a")] == ["galactic", "skip"]
    assert len(labels.history()) == 3


def test_events_are_never_rewritten(local_store):
    labels = LabelStore(local_store)
    labels.submit([LabelEvent(candid=7, label="galactic", user="a", timestamp=T0)])
    (key,) = local_store.list_keys(EVENTS_PREFIX)
    before = local_store.get_bytes(key)
    labels.submit([LabelEvent(candid=7, label="bogus", user="a", timestamp=T0 + timedelta(seconds=1))])
    assert local_store.get_bytes(key) == before and len(local_store.list_keys(EVENTS_PREFIX)) == 2


def test_second_reader_sees_events_of_another_instance(local_store):
    writer, reader = LabelStore(local_store), LabelStore(local_store)
    writer.submit([LabelEvent(candid=5, label="real", user="a")])
    assert reader.latest()[5].label == "real"
    writer.submit([LabelEvent(candid=5, label="bogus", user="a")])
    assert reader.latest()[5].label == "bogus"


def test_concurrent_submissions_from_two_threads_lose_nothing(local_store):
    labels = LabelStore(local_store)
    barrier = threading.Barrier(2)

    def labeller(user: str, offset: int) -> None:
        barrier.wait()
        for i in range(40):
            labels.submit([LabelEvent(candid=offset + i, label="galactic", user=user)])

    threads = [threading.Thread(target=labeller, args=(u, o)) for u, o in (("a", 1000), ("b", 1020))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(labels.history()) == 80
    assert len(labels.history(user="a")) == 40 and len(labels.history(user="b")) == 40


def test_csv_round_trip_with_prototype_columns(local_store, tmp_path):
    src = tmp_path / "labels.csv"
    src.write_text(
        "candid,objectId,label,timestamp\n"
        "1786385875815010010,ZTF18ablwjuy,galactic,2025-06-02T12:00:00\n"
        "1786142742615010038,ZTF18abvhysb,extragalactic,2025-06-02T12:01:00+00:00\n"
    )
    labels = LabelStore(local_store)
    assert len(labels.import_csv(src, user="heloise")) == 2
    out = tmp_path / "out.csv"
    assert labels.export_csv(out) == 2
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == ["candid", "objectId", "label", "timestamp", "user", "source"]  # the prototype's first
    assert {(r["candid"], r["objectId"], r["label"]) for r in rows} == {
        ("1786385875815010010", "ZTF18ablwjuy", "galactic"),
        ("1786142742615010038", "ZTF18abvhysb", "extragalactic"),
    }
    assert {e.source for e in labels.history()} == {"import"}


def test_importing_the_same_dated_csv_twice_adds_nothing(local_store, tmp_path):
    src = tmp_path / "labels.csv"
    src.write_text("candid,objectId,label,timestamp\n11,ZTF1,bogus,2025-06-02T12:00:00\n")
    labels = LabelStore(local_store)
    first, second = labels.import_csv(src, user="u"), labels.import_csv(src, user="u")
    assert first == second and len(local_store.list_keys(EVENTS_PREFIX)) == 1


def test_import_reports_every_bad_row_and_writes_none(local_store, tmp_path):
    src = tmp_path / "labels.csv"
    src.write_text("candid,objectId,label,timestamp\n11,ZTF1,bogus,\nx,ZTF2,real,\n12,ZTF3,star,\n")
    with pytest.raises(InvalidArgument, match=r"line 3: .*line 4: unknown label 'star'"):
        LabelStore(local_store).import_csv(src, user="u")
    assert local_store.list_keys(EVENTS_PREFIX) == []


def test_the_snapshot_schema_follows_the_event_fields_in_order():
    """Snapshots build events positionally: a field added to LabelEvent must be added to the schema, in order."""
    from skysift.trainer.labels import EVENT_FIELDS, SNAPSHOT_SCHEMA, snapshot_events, snapshot_table

    assert tuple(SNAPSHOT_SCHEMA.names) == ("key", *EVENT_FIELDS)
    event = LabelEvent(candid=7, label="agn", user="ann", object_id="ZTF1", model_tag="galactic",
                       timestamp=datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=UTC), source="import", event_id="e1",
                       experiment="vra", round=3, comment="host nucleus")
    assert snapshot_events(snapshot_table({"k": event})) == {"k": event}


def test_a_snapshot_is_extended_by_the_newer_events_in_key_order_even_when_a_late_import_sorts_inside_it(local_store,
                                                                                                          tmp_path):
    """The next snapshot is the one read plus the newer events as columns, re-sorted when an old-dated import
    lands inside it: a fresh reader of it gets exactly the events alone, timestamps as UTC datetimes."""
    import pyarrow.parquet as pq

    from skysift.trainer.labels import SNAPSHOTS_PREFIX

    LabelStore(local_store, snapshot_after=3).submit([LabelEvent(candid=c, label="real", user="ann") for c in (1, 2, 3)])
    assert len(LabelStore(local_store, snapshot_after=3).events()) == 3  # the first snapshot
    writer = LabelStore(local_store, snapshot_after=3)
    writer.events()
    writer.submit([LabelEvent(candid=c, label="bogus", user="bob") for c in (4, 5)])
    path = tmp_path / "old.csv"
    path.write_text("candid,objectId,label,timestamp\n6,ZTF6,agn,2020-01-01T00:00:00+00:00\n")
    writer.import_csv(path, user="importer")  # dated 2020: sorts before every snapshotted event
    assert len(writer.events()) == 6  # three newer events: the second snapshot, extended from the first
    newest = local_store.list_keys(SNAPSHOTS_PREFIX)[-1]
    keys = pq.read_table(local_store.url + "/" + newest).column("key").to_pylist()
    assert keys == sorted(keys) and len(keys) == 6
    fresh = LabelStore(local_store, snapshot_after=10**9).events()
    alone = LabelStore(local_store, snapshots=False).events()
    assert fresh == alone and fresh[0].candid == 6 and all(e.timestamp.tzinfo is UTC for e in fresh)


def test_the_columnar_reads_a_round_uses_equal_the_same_rules_applied_to_the_event_objects(local_store):
    """Latest per candid, conflicts per (candid, user) and the digest, computed in Arrow without an object per event,
    against the rules written out over :meth:`events` (relabels, two labellers, a snapshot in the middle)."""
    import hashlib

    from skysift.modeltags import get_tag
    from skysift.trainer.labels import label_conflicts, labels_digest, latest_of

    tag = get_tag("galactic")
    labels = LabelStore(local_store, snapshot_after=4)
    sequence = [(1, "galactic", "ann"), (2, "extragalactic", "ann"), (1, "extragalactic", "bob"), (3, "skip", "ann"),
                (2, "galactic", "ann"), (4, "galactic", "bob"), (4, "galactic", "ann"), (1, "galactic", "ann")]
    for i, (candid, label, user) in enumerate(sequence):
        labels.submit([LabelEvent(candid=candid, label=label, user=user, timestamp=T0 + timedelta(minutes=i))])
        if i == 4:
            labels.events()  # five events unsnapshotted: this read compacts them; the rest come after it
    events = LabelStore(local_store).events()

    latest: dict[int, LabelEvent] = {}
    per_user: dict[tuple[int, str], int | None] = {}
    for e in events:
        latest[e.candid] = e
        per_user[(e.candid, e.user)] = tag.target(e.label)
    targets: dict[int, set] = {}
    for (candid, _), target in per_user.items():
        if target is not None:
            targets.setdefault(candid, set()).add(target)
    digest = hashlib.sha256("".join(f"{c}:{latest[c].event_id};" for c in sorted(latest)).encode()).hexdigest()

    every = labels.table()
    table = latest_of(every)
    assert table.column("candid").to_pylist() == sorted(latest)
    assert labels.latest() == latest and latest[1].label == "galactic" and latest[2].label == "galactic"
    assert label_conflicts(every, tag) == {c for c, t in targets.items() if len(t) > 1} == {1}
    assert labels_digest(table) == labels_digest(latest_of(every, columns=["candid", "event_id"])) == digest
    assert latest_of(every, candids=[2, 3, 99]).column("candid").to_pylist() == [2, 3]
    assert labels_digest(latest_of(every, candids=[])) == hashlib.sha256(b"").hexdigest()


def test_an_imported_event_id_that_is_not_a_plain_name_is_refused_before_any_write(local_store, tmp_path):
    """An all-events export's event ids are kept on import, and an event id names the event's object: a row
    whose id holds a path or odd characters is refused with its line, and nothing is written."""
    path = tmp_path / "events.csv"
    path.write_text("candid,objectId,label,timestamp,user,source,event_id\n"
                    "11,ZTF1,bogus,2025-06-02T12:00:00,ann,human,abc123\n"
                    "12,ZTF2,bogus,2025-06-02T12:00:00,ann,human,../../x\n")
    labels = LabelStore(local_store)
    with pytest.raises(InvalidArgument, match=r"line 3: event id '../../x'"):
        labels.import_csv(path)
    assert labels.events() == []
