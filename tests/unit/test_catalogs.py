"""Offline cross-match against the installed VSX, GCVS and Mangrove catalogues, on real alerts from tests/data.

The nearest entries are checked against astropy's own sky matching (``match_coordinates_sky`` builds its own
KD-tree on its own coordinates) and ``SkyCoord.separation``; the install step is checked on real catalogue rows.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from skysift.enrichment import catalog_install, catalogs
from skysift.enrichment.catalogs import CONTEXT_FIELDS, load_catalogs
from skysift.enrichment.core import ENRICHED_SCHEMA, enrich
from skysift.enrichment.extinction import load_extinction_map
from skysift.errors import FailedPrecondition
from tests.fink_parquet import load_fink_alerts

SAMPLE = Path(__file__).parents[1] / "data" / "catalogs"


@pytest.fixture(scope="module")
def installed():
    found = load_catalogs()
    if found is None:
        pytest.fail("offline catalogues not installed in this environment: run `make catalogs`")
    return found


@pytest.fixture(scope="module")
def alerts():
    return load_fink_alerts()[0]


@pytest.fixture(scope="module")
def enriched(alerts, installed):
    return enrich(alerts, None, load_extinction_map(), installed)


def _sky(table: pa.Table):
    from astropy import units as u
    from astropy.coordinates import SkyCoord

    return SkyCoord(table["ra"].to_numpy() * u.deg, table["dec"].to_numpy() * u.deg)


def test_real_alerts_find_variable_stars_and_host_galaxies(enriched):
    assert enriched.schema.equals(ENRICHED_SCHEMA)
    n_var = len(enriched) - enriched["varstar_type"].null_count
    n_host = len(enriched) - enriched["host_name"].null_count
    assert n_var >= 30 and n_host >= 10, (n_var, n_host)
    assert set(enriched["varstar_catalogue"].drop_null().to_pylist()) == {"VSX", "GCVS"}
    assert set(enriched["offline_catalogs"].to_pylist()) == {"fink-science 7.4.0: VSX, GCVS, Mangrove"}
    sep = enriched["varstar_separation_arcsec"].drop_null().to_numpy()
    assert np.all((sep >= 0) & (sep <= 1.5))
    host = enriched.filter(enriched["host_name"].is_valid())
    assert np.all(host["host_distance_mpc"].to_numpy() > 0) and np.all(host["host_separation_arcsec"].to_numpy() <= 60)


def test_types_agree_with_simbad_where_fink_knows_the_star(alerts, enriched):
    """Independent evidence: SIMBAD (Fink's cdsxmatch) and VSX/GCVS agree on the class of the same stars."""
    pairs = [(s, t) for s, t in zip(alerts["cdsxmatch"].to_pylist(), enriched["varstar_type"].to_pylist()) if t]
    rr = [t for s, t in pairs if s == "RRLyrae"]
    eclipsing = [t for s, t in pairs if s in ("EclBin", "EB*")]
    assert rr and all(t.startswith("RR") for t in rr), rr
    # one SIMBAD eclipsing binary is a flare star (UV) in VSX: catalogues disagree sometimes, mostly they agree
    assert eclipsing and sum(t.startswith("E") for t in eclipsing) >= 2 * len(eclipsing) / 3, eclipsing
    assert not any(s in ("SN", "Supernova", "SNIa") for s, _ in pairs)


def test_nearest_entries_and_separations_agree_with_astropy(alerts, enriched, installed):
    from astropy.coordinates import match_coordinates_sky

    coords = _sky(alerts)
    for table, sep_col, radius in ((installed.varstars, "varstar_separation_arcsec", 1.5),
                                   (installed.galaxies, "host_separation_arcsec", 60.0)):
        idx, d2d, _ = match_coordinates_sky(coords, _sky(table))
        ours = enriched[sep_col].to_numpy(zero_copy_only=False)
        within = d2d.arcsec <= radius
        assert np.array_equal(np.isfinite(ours), within)
        np.testing.assert_allclose(ours[within], d2d.arcsec[within], rtol=0, atol=1e-6)
        # the entry itself: its separation from the alert, computed by SkyCoord, is the one reported
        entry = _sky(table.take(pa.array(idx[within])))
        np.testing.assert_allclose(coords[within].separation(entry).arcsec, ours[within], atol=1e-6)


def test_host_offset_is_separation_times_angular_distance(enriched, installed):
    host = enriched.filter(enriched["host_name"].is_valid()).to_pylist()
    by_name = {r["name"]: r for r in installed.galaxies.filter(installed.galaxies["name"].is_valid()).to_pylist()}
    for row in host:
        galaxy = by_name[row["host_name"]]
        assert galaxy["lum_dist_mpc"] == row["host_distance_mpc"]
        kpc = np.radians(row["host_separation_arcsec"] / 3600) * galaxy["ang_dist_mpc"] * 1000
        assert row["host_offset_kpc"] == pytest.approx(kpc, rel=1e-9)


def test_positions_without_value_match_nothing_and_rows_keep_their_order(installed):
    table = pa.table({"candid": [1, 2, 3], "objectId": ["a", "b", "c"], "survey": ["ztf"] * 3,
                      "ra": [None, 10.0, float("nan")], "dec": [10.0, None, 1.0]})
    out = enrich(table, None, load_extinction_map(), installed)
    assert out["candid"].to_pylist() == [1, 2, 3]
    assert out["varstar_type"].null_count == out["host_name"].null_count == 3
    assert out["offline_catalogs"].null_count == 0  # searched, nothing found


def test_without_catalogues_the_context_is_null_and_says_not_searched(alerts):
    out = enrich(alerts.slice(0, 5), None, load_extinction_map())
    assert all(out[f.name].null_count == 5 for f in CONTEXT_FIELDS)


def test_a_named_directory_without_catalogues_stops_start_up(tmp_path):
    with pytest.raises(FailedPrecondition, match="skysift catalogs install"):
        load_catalogs(tmp_path)


def test_the_default_directory_without_catalogues_warns_and_goes_on(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(catalogs, "default_dir", lambda: tmp_path / "nothing")
    assert load_catalogs() is None
    assert "not installed" in caplog.text


def _sample_wheel(path: Path) -> Path:
    """A zip laid out like the fink-science wheel, holding real rows of its three catalogues."""
    with zipfile.ZipFile(path, "w") as archive:
        for member in catalog_install.MEMBERS.values():
            archive.write(SAMPLE / Path(member).name, member)
    return path


def test_install_normalises_the_wheels_catalogues_and_records_provenance(tmp_path):
    target = tmp_path / "catalogs"
    provenance = catalog_install.extract(_sample_wheel(tmp_path / "sample.whl"), target)
    raw_vsx = pq.read_table(SAMPLE / "vsx.parquet")
    vsx = pq.read_table(target / "vsx.parquet")
    assert vsx.column_names == ["ra", "dec", "type"] and vsx.num_rows == raw_vsx.num_rows
    assert vsx["type"].to_pylist() == [t.strip() or None for t in raw_vsx["VType"].to_pylist()]
    raw_gal = pq.read_table(SAMPLE / "mangrove_filtered.parquet").to_pylist()
    gal = pq.read_table(target / "mangrove.parquet").to_pylist()
    for raw, row in zip(raw_gal, gal):
        name = raw["HyperLEDA_name"] if raw["HyperLEDA_name"] not in (None, "None") else raw["2MASS_name"]
        assert row["name"] == (None if name in (None, "None") else name)
        assert (row["ra"], row["dec"], row["lum_dist_mpc"]) == (raw["ra"], raw["dec"], raw["lum_dist"])
    assert json.loads((target / "PROVENANCE.json").read_text()) == provenance
    assert provenance["rows"]["GCVS"] == pq.read_metadata(SAMPLE / "gcvs.parquet").num_rows
    # and the installed directory is what the enrichment loads
    loaded = load_catalogs(target)
    assert loaded.varstars.num_rows == provenance["rows"]["VSX"] + provenance["rows"]["GCVS"]


def test_a_wheel_that_is_not_the_pinned_one_is_refused(tmp_path):
    with pytest.raises(FailedPrecondition, match="not the pinned wheel"):
        catalog_install.install(tmp_path / "catalogs", _sample_wheel(tmp_path / "sample.whl"))
    assert not (tmp_path / "catalogs").exists()


def test_the_label_page_shows_host_and_variable_star_of_a_stored_batch(local_settings, local_store, installed):
    """The demo's alerts (Fink's ZTF stream) through the enrichment stage, then the facts the label page shows."""
    from skysift.app.alertdata import BatchCache, facts, load_alert
    from skysift.enrichment.core import EnrichmentStage
    from skysift.enrichment.settings import EnrichmentSettings
    from tests.app_support import fink_labeled_packets, write_batch

    key, _ = write_batch(local_store, fink_labeled_packets(), cutouts=False)
    result = EnrichmentStage(local_settings, local_store, EnrichmentSettings()).process(key)
    enriched = local_store.read_table(result.enriched.key).to_pylist()
    star = next(r for r in enriched if r["varstar_type"])
    host = next(r for r in enriched if r["host_name"])
    plain = next(r for r in enriched if not r["varstar_type"] and not r["host_name"])
    cache = BatchCache(local_store)
    shown = dict(facts(load_alert(cache, key, star["candid"])))
    assert shown[f"variable star ({star['varstar_catalogue']})"].startswith(f"{star['varstar_type']} at ")
    shown = dict(facts(load_alert(cache, key, host["candid"])))
    assert shown["host galaxy (Mangrove)"].startswith(f"{host['host_name']}: ")
    assert f"{host['host_distance_mpc']:.0f} Mpc" in shown["host galaxy (Mangrove)"]
    shown = dict(facts(load_alert(cache, key, plain["candid"])))
    assert not any(k.startswith(("variable star", "host galaxy")) for k in shown)
