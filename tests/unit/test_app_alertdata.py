from datetime import UTC, datetime

import pyarrow as pa
import pytest

from skysift.app.alertdata import BatchCache, facts, links, load_alert
from skysift.app.trainer import QueueItem
from skysift.errors import NotFound
from skysift.store import keys
from tests.app_support import rubin_packets, write_batch, ztf_packets


@pytest.fixture
def ztf_batch(local_store):
    key, table = write_batch(local_store, ztf_packets(6))
    return local_store, key, table


def test_alert_comes_with_its_three_stamps(ztf_batch):
    store, key, table = ztf_batch
    candid = table["candid"][2].as_py()
    view = load_alert(BatchCache(store), key, candid)
    assert view.alert["candid"] == candid
    assert sorted(view.cutouts) == ["difference", "science", "template"]
    assert all(data[:2] == b"\x1f\x8b" for data in view.cutouts.values())


def test_batch_without_cutouts_says_no_stamps(local_store):
    key, table = write_batch(local_store, ztf_packets(2), cutouts=False)
    view = load_alert(BatchCache(local_store), key, table["candid"][0].as_py())
    assert view.cutouts is None


def test_missing_enrichment_and_features_are_reported_not_raised(ztf_batch):
    store, key, table = ztf_batch
    view = load_alert(BatchCache(store), key, table["candid"][0].as_py())
    assert view.missing == ["enriched", "features"]
    assert dict(facts(view))["Sherlock class"] == "– (not enriched)"


def test_enrichment_columns_reach_the_facts(ztf_batch):
    store, key, table = ztf_batch
    candid = table["candid"][0].as_py()
    enriched = pa.table({"candid": [candid], "sherlock_classification": ["SN"], "sherlock_separation_arcsec": [1.234],
                         "ebv": [0.0312]})
    store.write_table(str(keys.parse_batch(key).sibling("enriched")), enriched)
    view = load_alert(BatchCache(store), key, candid)
    shown = dict(facts(view))
    assert (shown["Sherlock class"], shown["Sherlock separation (arcsec)"], shown["E(B-V)"]) == ("SN", "1.23", "0.031")
    assert view.missing == ["features"]


def test_facts_say_why_the_alert_was_queued(ztf_batch):
    store, key, table = ztf_batch
    row = table.slice(0, 1).to_pylist()[0]
    item = QueueItem(row["candid"], row["objectId"], 1, 0.93, 0.47, "uncertainty", "p=0.47, closest to 0.5", key)
    shown = dict(facts(load_alert(BatchCache(store), key, row["candid"]), item))
    assert shown["candid"] == str(row["candid"]) and shown["objectId"] == row["objectId"]
    assert shown["model probability"] == "0.470"
    assert shown["queued by"].startswith("uncertainty (rank 1")
    assert shown["why"] == "p=0.47, closest to 0.5"
    assert shown["drb"] == f"{row['drb']:.3f}"


def test_unknown_candid_is_not_found(ztf_batch):
    store, key, _ = ztf_batch
    with pytest.raises(NotFound, match="12345"):
        load_alert(BatchCache(store), key, 12345)


def test_rubin_alert_is_read_from_its_own_batch(local_store):
    key, table = write_batch(local_store, rubin_packets(1), when=datetime(2026, 3, 27, 5, tzinfo=UTC))
    view = load_alert(BatchCache(local_store), key, table["candid"][0].as_py())
    assert key.startswith("alerts/survey=lsst/")
    assert sorted(view.cutouts) == ["difference", "science", "template"]
    assert dict(facts(view))["reliability"] != "–"


def test_batch_cache_reads_a_batch_once(ztf_batch):
    store, key, _ = ztf_batch
    cache = BatchCache(store, max_tables=2)
    first = cache.get(key)
    store.delete(key)  # batches are immutable: the cached table still serves
    assert cache.get(key) is first


def test_ztf_links_go_to_the_brokers_and_finders():
    out = links("ZTF18abuvecr", "ztf", 150.1, -2.5)
    assert out["Lasair"] == "https://lasair-ztf.lsst.ac.uk/objects/ZTF18abuvecr/"
    assert out["Fink"] == "https://fink-portal.org/ZTF18abuvecr"
    assert out["ALeRCE"] == "https://alerce.online/object/ZTF18abuvecr"
    assert "ra=150.100000&dec=-2.500000" in out["Legacy Survey viewer"]
    assert "Coord=150.100000+-2.500000" in out["SIMBAD (5 arcsec)"]


def test_rubin_links_go_to_the_brokers_lsst_sites_by_dia_object_id():
    out = links("313875416793743402", "lsst", 10.0, 5.0)
    assert out["Lasair"] == "https://lasair.lsst.ac.uk/objects/313875416793743402/"
    assert out["Fink"] == "https://lsst.fink-portal.org/313875416793743402"
    assert out["ALeRCE"] == "https://lsst.alerce.online/object/313875416793743402?survey=lsst"
    assert "ra=10.000000&dec=5.000000" in out["Legacy Survey viewer"]


def test_rubin_solar_system_source_without_dia_object_only_has_finders():
    assert sorted(links("ss21474836480", "lsst", 10.0, 5.0)) == ["Legacy Survey viewer", "SIMBAD (5 arcsec)",
                                                                 "TNS (5 arcsec)"]


def test_object_history_gathers_every_stored_alert_of_the_object_across_batches(tmp_path):
    """Two batches (two polls) each holding alerts of ZTF18acaxelp: all of them, oldest first, their points once."""
    from datetime import UTC, datetime

    from skysift.app.alertdata import history_table, object_history
    from skysift.store import open_store
    from tests.app_support import write_batch, ztf_packets

    store = open_store(str(tmp_path / "store"))
    packets = ztf_packets(100)
    first_key, first = write_batch(store, packets[:50], datetime(2024, 5, 1, tzinfo=UTC), cutouts=False)
    second_key, second = write_batch(store, packets[50:], datetime(2024, 5, 2, tzinfo=UTC), cutouts=False)
    rows = [r for t in (first, second) for r in t.to_pylist() if r["objectId"] == "ZTF18acaxelp"]
    assert len(rows) == 2
    found = object_history(store, "ztf", "ZTF18acaxelp", current_jd=rows[0]["jd"])
    assert [a["candid"] for a in found.alerts] == [r["candid"] for r in sorted(rows, key=lambda r: r["jd"])]
    assert {a["alerts_key"] for a in found.alerts} <= {first_key, second_key}
    every_point = {(round(jd, 5), b) for r in rows for jd, b in zip(r["det_jd"], r["det_band"])}
    assert len(found.curve_row["det_jd"]) == len(every_point)  # the union, each point once
    table = history_table(found, rows[0]["candid"])
    assert [t["candid"] for t in table if t[""]] == [str(rows[0]["candid"])]
    assert table[0]["date (UTC)"][:2] == "20" and table[0]["MJD"] == pytest.approx(found.alerts[0]["jd"] - 2400000.5,
                                                                                    abs=1e-4)
    assert object_history(store, "ztf", "ZTF00nothing").alerts == []
