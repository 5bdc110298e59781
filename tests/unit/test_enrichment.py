"""enrich() and EnrichmentStage without Lasair: extinction, carried broker values, Rubin alike, statuses, keys."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from skysift.enrichment.core import ENRICHED_SCHEMA, EnrichmentStage, enrich
from skysift.enrichment.extinction import HEALPIX_MAP, load_extinction_map
from skysift.enrichment.lasair import parse_sherlock
from skysift.enrichment.settings import EnrichmentSettings
from skysift.errors import InvalidArgument, NotFound
from tests.fink_parquet import load_fink_alerts

ALERTS_KEY = "alerts/survey=ztf/night=20240601/20240601_120000_alerts.parquet"
LSST_PARQUET = Path(__file__).parents[1] / "data" / "alerts" / "lsst" / "real" / "fink-tutorials_ftransfer_2026-03-27"


@pytest.fixture(scope="module")
def alerts():
    return load_fink_alerts()[0].slice(0, 80)


@pytest.fixture(scope="module")
def ebv_map():
    return load_extinction_map()


def _rubin_alerts() -> pa.Table:
    """Real Rubin alerts (Fink's 2026-03-27 transfer) reduced to the alerts columns enrichment reads."""
    rows = []
    for path in sorted(LSST_PARQUET.glob("*.parquet")):
        for a in pq.read_table(path, columns=["diaSourceId", "diaSource", "xm"]).to_pylist():
            src = a["diaSource"]
            rows.append({"candid": a["diaSourceId"], "objectId": str(src["diaObjectId"]), "survey": "lsst",
                         "ra": src["ra"], "dec": src["dec"], "xm_simbad_otype": (a["xm"] or {}).get("simbad_otype")})
    return pa.Table.from_pylist(rows)


def test_without_a_token_sherlock_is_null_and_not_configured(alerts, ebv_map):
    table = enrich(alerts, None, ebv_map)
    assert table.schema.equals(ENRICHED_SCHEMA)
    assert set(table["sherlock_status"].to_pylist()) == {"not_configured"}
    assert table["sherlock_classification"].null_count == table["sherlock_separation_arcsec"].null_count == len(alerts)


def test_extinction_is_looked_up_per_alert_and_names_its_map(alerts, ebv_map):
    table = enrich(alerts, None, ebv_map)
    np.testing.assert_allclose(table["ebv"].to_numpy(), ebv_map.ebv(alerts["ra"].to_numpy(), alerts["dec"].to_numpy()))
    assert set(table["ebv_map"].to_pylist()) == {HEALPIX_MAP}


def test_rows_follow_the_alerts_and_finks_values_are_carried(alerts, ebv_map):
    table = enrich(alerts, None, ebv_map)
    assert table["candid"].to_pylist() == alerts["candid"].to_pylist()
    assert table["cdsxmatch"].to_pylist() == alerts["cdsxmatch"].to_pylist()
    assert table["roid"].to_pylist() == alerts["roid"].to_pylist()


def test_rubin_alerts_are_enriched_alike_with_finks_simbad_type(ebv_map):
    rubin = _rubin_alerts()
    table = enrich(rubin, None, ebv_map)
    assert table["survey"].to_pylist() == ["lsst"] * rubin.num_rows
    assert table["cdsxmatch"].to_pylist() == rubin["xm_simbad_otype"].to_pylist()
    assert table["ebv"].null_count == 0
    assert table["roid"].null_count == table["tns"].null_count == rubin.num_rows  # no such fields: null, not faked


def test_an_empty_batch_gives_an_empty_table(alerts, ebv_map):
    assert enrich(alerts.slice(0, 0), None, ebv_map).schema.equals(ENRICHED_SCHEMA)


def test_a_position_missing_gives_null_extinction_not_a_number(ebv_map):
    table = enrich(pa.table({"candid": [1], "objectId": ["x"], "survey": ["ztf"], "ra": [None], "dec": [10.0]},
                            schema=pa.schema([("candid", pa.int64()), ("objectId", pa.string()), ("survey", pa.string()),
                                              ("ra", pa.float64()), ("dec", pa.float64())])), None, ebv_map)
    assert table["ebv"].to_pylist() == [None] and table["ebv_map"].to_pylist() == [None]


def test_sherlock_answer_wrapped_by_objectid_as_documented():
    answer = {"ZTF20acpwljl": {"classifications": {"ZTF20acpwljl": ["SN", "possibly associated with ..."]},
                               "crossmatches": [{"catalogue_object_id": "1237673709862061782",
                                                 "catalogue_table_name": "SDSS/2MASS/PS1", "separationArcsec": 1.56,
                                                 "rank": 1, "transient_object_id": "ZTF20acpwljl"}]}}
    match = parse_sherlock(answer, "ZTF20acpwljl")
    assert (match.classification, match.separation_arcsec, match.catalogue_object_id) == ("SN", 1.56, "1237673709862061782")


def test_stage_writes_the_enrichment_beside_the_batch(local_settings, local_store, alerts):
    local_store.write_table(ALERTS_KEY, alerts)
    result = EnrichmentStage(local_settings, local_store, EnrichmentSettings()).process(ALERTS_KEY)
    assert result.enriched.key == "enriched/survey=ztf/night=20240601/20240601_120000_enriched.parquet"
    assert result.enriched.rows == len(alerts) and result.status_counts == {"not_configured": len(alerts)}
    assert local_store.read_schema(result.enriched.key).equals(ENRICHED_SCHEMA)


def test_stage_refuses_other_keys_and_reports_missing_batches(local_settings, local_store):
    stage = EnrichmentStage(local_settings, local_store, EnrichmentSettings())
    with pytest.raises(InvalidArgument, match="expected a key under alerts/"):
        stage.process("features/survey=ztf/night=20240601/20240601_120000_features.parquet")
    with pytest.raises(NotFound):
        stage.process(ALERTS_KEY)
    local_store.write_table(ALERTS_KEY, pa.table({"candid": [1]}))
    with pytest.raises(InvalidArgument, match="not an alerts table"):
        stage.process(ALERTS_KEY)


def test_the_lasair_token_is_a_secret(monkeypatch):
    monkeypatch.setenv("SKYSIFT_ENRICHMENT_LASAIR_TOKEN", "tok-123456")
    from skysift import config

    s = config.load(EnrichmentSettings)
    assert s.sherlock_configured and "tok-123456" not in repr(s)
