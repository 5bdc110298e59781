"""The inference candid index's nightly pieces on a real S3 server: a first start over several nights GETs one piece a
night instead of one object per batch and finds every candid; the features stage's runs bring older nights' pieces
up to date and leave tonight's alone; a batch no piece covers is read by itself, a deleted one is not indexed, an
unreadable piece is skipped."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pyarrow as pa
import pytest

from skysift.errors import NotFound
from skysift.features.candid_pieces import PREFIX, bring_up_to_date, piece_keys
from skysift.inference.rows import CandidIndex
from skysift.store import keys, open_store
from tests.inference_support import fink_batch, store_batch

NIGHTS, BATCHES_A_NIGHT = 3, 3
DAY = int(timedelta(days=1).total_seconds())


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


def write_nights(store, alerts, features, compact_from_night: int) -> list[str]:
    """NIGHTS nights of BATCHES_A_NIGHT batches; from night ``compact_from_night`` on, each batch followed by what
    the features stage does after writing one (the earlier nights: a deployment from before pieces)."""
    written = []
    for night in range(NIGHTS):
        for b in range(BATCHES_A_NIGHT):
            n = night * BATCHES_A_NIGHT + b
            key = store_batch(store, alerts, shifted(features, n), stem_seconds=night * DAY + b * 3600)
            if night >= compact_from_night:
                bring_up_to_date(store, {key: shifted(features, n).column("candid").to_numpy()}, nights_a_run=1)
            written.append(key)
    return written


def test_a_first_start_over_several_nights_reads_a_piece_a_night_and_finds_every_candid(s3_settings, batch):
    alerts, features = batch
    store = open_store(settings=s3_settings)
    write_nights(store, alerts, features, compact_from_night=1)
    assert len(piece_keys(store)) == NIGHTS  # night 0 had none: a later run compacted it (level-triggered)
    late = store_batch(store, alerts, shifted(features, 100), stem_seconds=NIGHTS * DAY)  # no compaction since

    index = CandidIndex(open_store(settings=s3_settings))  # a deployment's first start
    gets = gets_counted(index.store)
    assert index.refresh() == NIGHTS * BATCHES_A_NIGHT + 1
    assert len(gets) == NIGHTS + 1, gets  # a piece a night, and the one batch no piece covers (not 10 batches)
    assert late.rsplit("/", 1)[1] in gets[-1]

    wanted = np.concatenate([shifted(features, n).column("candid").to_numpy()
                             for n in [*range(NIGHTS * BATCHES_A_NIGHT), 100]])
    found = index.rows(wanted.tolist())
    assert np.array_equal(found.matrix(("candid",))[:, 0], wanted.astype(float))  # every candid, at its own row


def test_a_deleted_batch_is_not_indexed_and_an_unreadable_piece_is_skipped(s3_settings, batch):
    alerts, features = batch
    store = open_store(settings=s3_settings)
    keys_ = write_nights(store, alerts, features, compact_from_night=0)
    store.delete(keys_[0])  # still in night 0's piece
    (night_1_piece,) = piece_keys(store)[("ztf", keys_[BATCHES_A_NIGHT].split("night=")[1][:8])]
    store.put_bytes(night_1_piece, b"not parquet")

    index = CandidIndex(open_store(settings=s3_settings))
    gets = gets_counted(index.store)
    assert index.refresh() == len(keys_) - 1
    assert len(gets) == NIGHTS + BATCHES_A_NIGHT  # the pieces, then night 1's batches one by one
    with pytest.raises(NotFound):
        index.rows([shifted(features, 0).column("candid")[0].as_py()])
    night_1 = [shifted(features, n).column("candid")[0].as_py() for n in range(BATCHES_A_NIGHT, 2 * BATCHES_A_NIGHT)]
    assert index.rows(night_1).candid.tolist() == night_1


def test_a_run_compacts_only_what_is_stale_and_replaces_the_nights_piece(s3_settings, batch):
    alerts, features = batch
    store = open_store(settings=s3_settings)
    write_nights(store, alerts, features, compact_from_night=NIGHTS)  # no piece yet
    assert len(bring_up_to_date(store, nights_a_run=2)) == 2  # bounded: the two newest nights
    assert len(bring_up_to_date(store, nights_a_run=2)) == 1  # the oldest
    assert bring_up_to_date(store, nights_a_run=2) == []  # every night up to date: listings only
    assert sum(len(p) for p in piece_keys(store).values()) == NIGHTS and len(store.list_keys(PREFIX)) == NIGHTS
    tonight = str(keys.new_batch("features", "ztf"))  # a night still being observed: its batches are read one by one
    store.write_table(tonight, shifted(features, 50))
    assert bring_up_to_date(store, {tonight: shifted(features, 50).column("candid").to_numpy()}) == []
    index = CandidIndex(open_store(settings=s3_settings))
    gets = gets_counted(index.store)
    assert index.refresh() == NIGHTS * BATCHES_A_NIGHT + 1 and len(gets) == NIGHTS + 1
    assert index.rows([shifted(features, 50).column("candid")[0].as_py()]).candid.size == 1


def test_a_backfill_into_a_closed_night_leaves_its_piece_alone_until_the_night_is_quiet(s3_settings, batch):
    """A backfill writes thousands of batches into an old night, each polled now: rewriting the night's piece after
    each would GET and PUT the whole growing night every time (quadratic). The first backfilled batch takes the
    night's piece away (it may be a rewrite), no piece is written while batches keep coming, a start still finds
    every candid, and a run a day after the last batch compacts the night once."""
    import dataclasses
    from datetime import UTC, datetime

    from skysift.features.candid_pieces import read_candids

    alerts, features = batch
    store = open_store(settings=s3_settings)
    old = store_batch(store, alerts, shifted(features, 0))  # night 20250101, compacted a week later
    week_later = datetime(2025, 1, 8, tzinfo=UTC)
    assert len(bring_up_to_date(store, now=week_later)) == 1
    backfilled = []
    for n in range(1, 4):  # polled on the 8th, observed on the 1st
        polled = datetime(2025, 1, 8, n, tzinfo=UTC)
        key = str(dataclasses.replace(keys.new_batch("features", "ztf", polled), night="20250101"))
        store.write_table(key, shifted(features, n))
        assert bring_up_to_date(store, {key: shifted(features, n).column("candid").to_numpy()},
                                now=polled) == []
        assert ("ztf", "20250101") not in piece_keys(store)
        backfilled.append(key)
    found = read_candids(store, [old, *backfilled])
    assert all(found[k].tolist() == shifted(features, n).column("candid").to_pylist()
               for n, k in enumerate([old, *backfilled]))
    assert len(bring_up_to_date(store, now=datetime(2025, 1, 10, tzinfo=UTC))) == 1  # quiet: compacted once
    assert len(piece_keys(store)[("ztf", "20250101")]) == 1
