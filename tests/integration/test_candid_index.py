"""The inference candid index's start-up snapshot on a real S3 server: a fresh index that starts from the snapshot
finds the same rows as one that reads every batch, GETs one object instead of one per batch, reads the batches
written since one by one, ignores a batch deleted since, and skips an unreadable snapshot."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from skysift.errors import NotFound
from skysift.inference.rows import SNAPSHOTS_PREFIX, CandidIndex
from skysift.store import open_store
from tests.inference_support import fink_batch, store_batch


@pytest.fixture(scope="module")
def batch():
    return fink_batch()


def gets_counted(store) -> list[str]:
    seen: list[str] = []
    store.client.meta.events.register("before-call.s3.GetObject", lambda params, **_: seen.append(params["url_path"]))
    return seen


def shifted(features: pa.Table, n: int) -> pa.Table:
    """The real feature rows with candids of their own (distinct per batch, as a month of alerts is)."""
    return features.set_column(0, "candid", pa.array(features.column("candid").to_numpy() + n * 10**12, pa.int64()))


def test_a_start_up_from_the_snapshot_finds_what_reading_every_batch_finds(s3_settings, batch):
    alerts, features = batch
    assert features.column_names[0] == "candid"
    store = open_store(settings=s3_settings)
    for n in range(4):
        store_batch(store, alerts, shifted(features, n), stem_seconds=n)
    first = CandidIndex(store, snapshot_after=3)
    assert first.refresh() == 4 and len(store.list_keys(SNAPSHOTS_PREFIX)) == 1  # 4 batches read: a snapshot
    deleted = store_batch(store, alerts, shifted(features, 4), stem_seconds=4)
    newer = store_batch(store, alerts, shifted(features, 5), stem_seconds=5)
    CandidIndex(store, snapshot_after=3).refresh()  # 2 read one by one: below snapshot_after, no new snapshot
    assert len(store.list_keys(SNAPSHOTS_PREFIX)) == 1
    store.delete(deleted)

    fresh = CandidIndex(open_store(settings=s3_settings), snapshot_after=3)  # a restarted service
    gets = gets_counted(fresh.store)
    assert fresh.refresh() == 5
    assert len(gets) == 1 + 1, gets  # the snapshot, then the one batch written after it (not 5 batches)
    assert newer.rsplit("/", 1)[1] in gets[1]

    wanted = np.concatenate([shifted(features, n).column("candid").to_numpy()[:3] for n in (0, 3, 5)])
    from_snapshot = fresh.rows(wanted.tolist())
    for key in store.list_keys(SNAPSHOTS_PREFIX):
        store.delete(key)
    from_batches = CandidIndex(open_store(settings=s3_settings), snapshot_after=10**9)
    gets = gets_counted(from_batches.store)
    assert from_batches.refresh() == 5 and len(gets) == 5  # no snapshot: every batch's candid column
    expected = from_batches.rows(wanted.tolist())
    assert np.array_equal(from_snapshot.matrix(("candid",)), expected.matrix(("candid",)))
    assert np.array_equal(from_snapshot.matrix(("candid",))[:, 0], wanted.astype(float))
    gone = shifted(features, 4).column("candid")[0].as_py()
    for index in (fresh, from_batches):
        with pytest.raises(NotFound):
            index.rows([gone])


def test_an_unreadable_snapshot_is_skipped_and_the_batches_give_the_index(s3_settings, batch):
    alerts, features = batch
    store = open_store(settings=s3_settings)
    for n in range(2):
        store_batch(store, alerts, shifted(features, n), stem_seconds=n)
    store.put_bytes(f"{SNAPSHOTS_PREFIX}99991231T000000000000Z_bad.parquet", b"not parquet")
    index = CandidIndex(open_store(settings=s3_settings), snapshot_after=10**9)
    assert index.refresh() == 2
    candid = shifted(features, 1).column("candid")[0].as_py()
    assert index.rows([candid]).candid.tolist() == [candid]
