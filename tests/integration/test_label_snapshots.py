"""Label snapshots on a real S3 server: a snapshot plus the events written after it gives exactly the events alone
(normal labels, a relabel, and an import of old-dated rows, which sort before the snapshot), with one GET for the
snapshot instead of one per event; a corrupt snapshot is skipped."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from skysift.store import open_store
from skysift.trainer.labels import LATE_PREFIX, SNAPSHOTS_PREFIX, LabelEvent, LabelStore


def gets_counted(store) -> list[str]:
    seen: list[str] = []
    store.client.meta.events.register("before-call.s3.GetObject", lambda params, **_: seen.append(params["url_path"]))
    return seen


def test_a_snapshot_plus_newer_events_equals_the_events_alone(s3_settings, tmp_path):
    store = open_store(settings=s3_settings)
    writer = LabelStore(store, snapshot_after=5)
    writer.submit([LabelEvent(candid=1000 + i, label="galactic" if i % 2 else "extragalactic", user="ann",
                              object_id=f"ZTF{i}") for i in range(8)])
    first = writer.events()  # 8 events not in any snapshot: this read compacts them
    assert len(store.list_keys(SNAPSHOTS_PREFIX)) == 1 and len(first) == 8

    writer.submit([LabelEvent(candid=2000 + i, label="bogus", user="bob") for i in range(3)]
                  + [LabelEvent(candid=1001, label="agn", user="ann")])  # a relabel: the latest wins
    old = datetime(2020, 3, 1, tzinfo=UTC)
    csv = tmp_path / "old.csv"
    csv.write_text("candid,objectId,label,timestamp\n"
                   f"3000,ZTF20a,varstar,{old.isoformat()}\n3001,ZTF20b,real,{(old + timedelta(days=1)).isoformat()}\n")
    writer.import_csv(csv, user="importer")  # dated 2020: their keys sort long before the snapshot's listing
    assert len(store.list_keys(LATE_PREFIX)) == 2

    reader = LabelStore(open_store(settings=s3_settings), snapshot_after=10**9)  # a fresh process
    gets = gets_counted(reader.store)
    with_snapshot = reader.events()
    alone = LabelStore(open_store(settings=s3_settings), snapshots=False).events()
    assert with_snapshot == alone and len(alone) == 14
    assert reader.latest() == LabelStore(open_store(settings=s3_settings), snapshots=False).latest()
    assert reader.latest()[1001].label == "agn" and reader.latest()[3000].label == "varstar"
    # one GET for the snapshot, then only what came after it: 4 events and 2 late records, not 14 events
    assert len(gets) == 1 + 4 + 2, gets


def test_a_corrupt_snapshot_is_skipped_and_the_events_still_give_every_label(s3_settings):
    store = open_store(settings=s3_settings)
    LabelStore(store, snapshot_after=2).submit([LabelEvent(candid=c, label="real", user="ann") for c in (1, 2, 3)])
    assert LabelStore(store, snapshot_after=2).events()  # writes a snapshot
    (snapshot,) = store.list_keys(SNAPSHOTS_PREFIX)
    store.put_bytes(snapshot.replace(".parquet", "z.parquet"), b"not parquet")  # newer, unreadable
    events = LabelStore(open_store(settings=s3_settings), snapshot_after=10**9).events()
    assert [e.candid for e in events] == [1, 2, 3]
    # one dated far later: the events are first listed from its date, then again from the readable snapshot's
    store.put_bytes(f"{SNAPSHOTS_PREFIX}99991231T000000000000Z_bad.parquet", b"not parquet")
    LabelStore(store).submit([LabelEvent(candid=4, label="real", user="ann")])
    events = LabelStore(open_store(settings=s3_settings), snapshot_after=10**9).events()
    assert [e.candid for e in events] == [1, 2, 3, 4]


def test_snapshots_keep_only_the_newest_two_and_never_touch_the_events(s3_settings):
    store = open_store(settings=s3_settings)
    labels = LabelStore(store, snapshot_after=1)
    for candid in range(1, 5):
        labels.submit([LabelEvent(candid=candid, label="real", user="ann")])
        labels.events()
    assert len(store.list_keys(SNAPSHOTS_PREFIX)) == 2
    assert len(store.list_keys("labels/events/")) == 4
