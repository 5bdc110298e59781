"""Which earlier batches a poll brings up to date (level-triggered stages), from a store's listing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from skysift.backlog import find_behind

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def keys_of(stage: str, *stems: str, survey: str = "ztf", night: str = "20261203") -> list[str]:
    return [f"{stage}/survey={survey}/night={night}/{stem}_{stage}.parquet" for stem in stems]


def test_each_batch_lacking_a_later_stage_is_behind_oldest_first_with_every_stage_from_the_first_missing():
    listing = {
        "alerts": keys_of("alerts", "20261203_100000", "20261203_090000", "20261203_080000", "20261203_070000")
        + keys_of("alerts", "20261203_060000", night="20190612"),  # a backfill of an old night, polled today
        "enriched": keys_of("enriched", "20261203_100000", "20261203_090000", "20261203_070000"),
        "features": keys_of("features", "20261203_100000", "20261203_070000") + ["features/tmp/x.parquet.tmp"],
        "predictions": keys_of("predictions", "20261203_100000", "20261203_070000"),
    }
    backlog = find_behind(listing, NOW, timedelta(days=30), timedelta(minutes=5), limit=10)
    assert [(b.alerts_key.split("/")[2], b.alerts_key.rsplit("/", 1)[1][:15], b.missing) for b in backlog.behind] == [
        ("night=20190612", "20261203_060000", ("enriched", "features", "predictions")),
        ("night=20261203", "20261203_080000", ("enriched", "features", "predictions")),
        ("night=20261203", "20261203_090000", ("features", "predictions")),
    ]
    assert backlog.total == 3


def test_the_window_the_grace_period_the_bound_and_the_exclusions():
    stems = ["20261101_120000", "20261104_000000", "20261203_115800", "20261203_110000", "20261203_100000"]
    listing = {"alerts": keys_of("alerts", *stems)}
    backlog = find_behind(listing, NOW, timedelta(days=30), timedelta(minutes=5), limit=1,
                          exclude=keys_of("alerts", "20261203_110000"))
    # 20261101 is older than 30 days, 11:58 is younger than the grace period, 11:00 is handled by its own poll
    assert [b.alerts_key for b in backlog.behind] == keys_of("alerts", "20261104_000000")
    assert backlog.total == 2


def test_nothing_is_behind_when_every_stage_has_its_file():
    stems = ("20261203_100000", "20261203_100000_0a1b2c3d")  # two polls in one second: a unique suffix
    listing = {stage: keys_of(stage, *stems) for stage in ("alerts", "enriched", "features", "predictions")}
    assert find_behind(listing, NOW, timedelta(days=30), timedelta(0), limit=10).total == 0



def test_batches_a_current_champion_has_not_scored_are_behind_after_those_missing_a_file(tmp_path):
    """The champion moved: batches with predictions by the former version only are re-scored, after the batches
    lacking a file."""
    from skysift.backlog import list_scored, mark_scored
    from skysift.store.keys import parse_batch
    from skysift.store.local import LocalStore

    stems = ("20261203_070000", "20261203_080000", "20261203_090000")
    listing = {stage: keys_of(stage, *stems) for stage in ("alerts", "enriched", "features", "predictions")}
    listing["predictions"] = listing["predictions"][:2]  # the newest was never scored
    former, current = ("skysift_galactic", "1"), ("skysift_galactic", "2")
    store = LocalStore(tmp_path)
    mark_scored(store, parse_batch(listing["features"][0]), [former])
    mark_scored(store, parse_batch(listing["features"][1]), [former, current])
    backlog = find_behind(listing, NOW, timedelta(days=30), timedelta(0), limit=10,
                          scored=list_scored(store, [current], listing["alerts"], NOW, timedelta(days=30)))
    assert [(b.alerts_key.rsplit("/", 1)[1][:15], b.missing) for b in backlog.behind] == [
        ("20261203_090000", ("predictions",)),  # no predictions file at all
        ("20261203_070000", ("predictions",)),  # scored by the former champion only
    ]
    assert find_behind(listing, NOW, timedelta(days=30), timedelta(0), limit=10,
                       scored=list_scored(store, [former], listing["alerts"], NOW, timedelta(days=30))).total == 1  # the former champion: only the file is missing


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_scored_markers_are_listed_from_the_windows_nights_and_those_of_batches_that_left_it_pruned(
        kind, tmp_path, request):
    """Markers of the window's batches are listed; those of batches written in the few nights before the window are
    deleted by a pruning listing and never returned; older nights are not listed, unless a backfill of an old night
    in the window widens the listing to them. On S3 too (SeaweedFS skips a directory that StartAfter names)."""
    from skysift.backlog import list_scored, mark_scored, scored_key
    from skysift.store import open_store
    from skysift.store.keys import parse_batch
    from skysift.store.local import LocalStore

    champion = ("skysift_galactic", "2")
    inside = keys_of("alerts", "20261203_070000") + keys_of("alerts", "20261120_010000", night="20261119")
    left = keys_of("alerts", "20261102_230000", night="20261102")  # written 30.5 days before NOW
    ancient = keys_of("alerts", "20250101_000000", night="20250101")  # long before: not listed
    backfill = keys_of("alerts", "20261202_060000", night="20190612")  # written yesterday, of an old night
    store = LocalStore(tmp_path) if kind == "local" else open_store(settings=request.getfixturevalue("s3_settings"))
    for key in inside + left + ancient + backfill:
        mark_scored(store, parse_batch(key), [champion])
    ident = lambda key: (parse_batch(key).survey, parse_batch(key).night, parse_batch(key).stem)  # noqa: E731
    marker = lambda key: scored_key(champion, parse_batch(key))  # noqa: E731
    month = timedelta(days=30)

    alerts = inside + left + ancient
    assert list_scored(store, [champion], alerts, NOW, month) == {champion: {ident(k) for k in inside}}
    assert len(store.list_keys("state/scored/")) == 5  # status lists, never deletes
    assert list_scored(store, [champion], alerts, NOW, month, prune=True) == {champion: {ident(k) for k in inside}}
    assert set(store.list_keys("state/scored/")) == {marker(k) for k in inside + ancient + backfill}

    alerts += backfill
    assert list_scored(store, [champion], alerts, NOW, month, prune=True) == {champion: {ident(k) for k in inside + backfill}}
    assert set(store.list_keys("state/scored/")) == {marker(k) for k in inside + backfill}
