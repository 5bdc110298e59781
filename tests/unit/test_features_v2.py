"""Feature set 2 on real alerts: every Rubin band on fluxes, ZTF g/r/i, colours, rise/decline, context, versioning.

Expected values are computed per alert in plain Python from the decoded light curves (fluxes taken from the packets'
own psfFlux for Rubin, from magpsf for ZTF) and the light-curve package's feature objects called one alert at a time,
not through the batched Arrow path the code uses.
"""

from __future__ import annotations

import math
from pathlib import Path

import light_curve as lc
import numpy as np
import pyarrow as pa
import pytest

from skysift import config
from skysift.alerts.decode import decode_packets
from skysift.enrichment.catalogs import load_catalogs
from skysift.enrichment.core import enrich
from skysift.enrichment.extinction import load_extinction_map
from skysift.errors import ConfigError
from skysift.features import core, v2
from skysift.features.core import feature_set_version
from skysift.features.sets import configured, feature_set
from skysift.features.settings import FeaturesSettings
from skysift.features.stage import FeaturesStage
from skysift.inference.scoring import batch_feature_set_version
from skysift.trainer.rounds import FeatureSpec
from tests.unit.test_features import _same

DATA = Path(__file__).parents[1] / "data" / "alerts"
ALERTS_KEY = "alerts/survey=lsst/night=20260327/20260327_120000_alerts.parquet"


def _decode(paths: list[Path], survey: str) -> pa.Table:
    return decode_packets([p.read_bytes() for p in paths]).alerts[survey]


@pytest.fixture(scope="module")
def rubin():
    real = DATA / "lsst" / "real"
    alerts = _decode(sorted(real.rglob("*.avro")) + sorted(real.rglob("*.parquet")), "lsst")
    return alerts, v2.compute_features(alerts)


@pytest.fixture(scope="module")
def ztf():
    alerts = _decode(sorted((DATA / "ztf").rglob("*.avro")), "ztf")
    return alerts, v2.compute_features(alerts)


def _points(alert: dict, band: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(t, flux nJy, error) of one band's detections, independently of the code under test."""
    rows = []
    for i, b in enumerate(alert["det_band"]):
        if b != band:
            continue
        if alert.get("det_psfflux") and alert["det_psfflux"][i] is not None:
            flux, err = alert["det_psfflux"][i], alert["det_psffluxerr"][i]
        else:
            mag, sig = alert["det_magpsf"][i], alert["det_sigmapsf"][i]
            if mag is None or sig is None:
                continue
            flux = (1 if alert["det_isdiffpos"][i] else -1) * 10 ** (-0.4 * (mag - 31.4))
            err = abs(flux) * sig / (2.5 / math.log(10))
        if err is not None and math.isfinite(flux) and math.isfinite(err) and err > 0:
            rows.append((alert["det_jd"][i], flux, err))
    rows.sort(key=lambda r: r[0])
    return tuple(np.array(col, dtype=float) for col in zip(*rows)) if rows else (np.array([]),) * 3


def test_rubin_alerts_get_finite_features_in_every_band_they_were_observed_in(rubin):
    alerts, features = rubin
    observed = 0
    for alert, row in zip(alerts.to_pylist(), features.to_pylist()):
        for band in set(alert["det_band"]):
            t, flux, _ = _points(alert, band)
            distinct = len(np.unique(t))
            assert row[f"ndet_{band}"] == len(t) > 0
            for stem, points in v2.MIN_POINTS.items():
                needs_times = stem.startswith(("linear_fit", "periodogram"))
                if (distinct if needs_times else len(t)) >= points:
                    assert math.isfinite(row[f"{stem}_{band}"]), (alert["candid"], band, stem, len(t))
            assert math.isfinite(row[f"peak_flux_{band}"])
            observed += 1
        for band in set(v2.BANDS) - set(alert["det_band"]):
            assert row[f"ndet_{band}"] == 0 and math.isnan(row[f"amplitude_{band}"])
    assert observed > 100
    bands_with_features = {b for b in v2.BANDS if np.isfinite(features[f"amplitude_{b}"].to_numpy()).any()}
    assert bands_with_features >= {"g", "r", "i", "z", "y"}  # feature set 1 had g and r only


def test_band_features_are_the_light_curve_package_on_the_fluxes_negative_ones_kept(rubin, ztf):
    amplitude, mean, stetson, fit = lc.Amplitude(), lc.WeightedMean(), lc.StetsonK(), lc.LinearFit()
    negative_seen = checked = 0
    for alerts, features in (rubin, ztf):
        for alert, row in zip(alerts.to_pylist(), features.to_pylist()):
            for band in set(alert["det_band"]):
                t, flux, err = _points(alert, band)
                if len(t) < 3 or len(np.unique(t)) < len(t):
                    continue
                negative_seen += int((flux < 0).any())
                assert row[f"amplitude_{band}"] == pytest.approx(amplitude(t, flux, err)[0], rel=1e-9)
                assert row[f"weighted_mean_{band}"] == pytest.approx(mean(t, flux, err)[0], rel=1e-9)
                assert row[f"stetson_k_{band}"] == pytest.approx(stetson(t, flux, err)[0], rel=1e-9)
                assert row[f"linear_fit_slope_{band}"] == pytest.approx(fit(t, flux, err)[0], rel=1e-6)
                assert row[f"peak_flux_{band}"] == pytest.approx(flux.max(), rel=1e-12)
                checked += 1
    assert checked > 100 and negative_seen > 5


def test_ztf_i_band_has_features_of_its_own(ztf):
    alerts, features = ztf
    with_i = [(a, r) for a, r in zip(alerts.to_pylist(), features.to_pylist()) if "i" in a["det_band"]]
    assert with_i
    assert all(r["ndet_i"] == a["det_band"].count("i") and math.isfinite(r["amplitude_i"]) for a, r in with_i)


def _mag(flux: float) -> float:
    return -2.5 * math.log10(flux) + 31.4


def test_colours_rise_and_decline_match_a_per_alert_computation(ztf):
    alerts, features = ztf
    colours = rates = 0
    for alert, row in zip(alerts.to_pylist(), features.to_pylist()):
        at = {}
        for band in ("g", "r"):
            t, flux, _ = _points(alert, band)
            keep = flux > 0
            t, flux = t[keep], flux[keep]
            if len(t) == 0:
                continue
            peak = int(np.argmax(flux))
            peak = max(i for i in range(len(flux)) if flux[i] == flux[peak])  # a tie: the later point
            at[band] = (t[-1], _mag(flux[-1]), _mag(flux[peak]))
            if t[peak] > t[0]:
                expected = (_mag(flux[0]) - _mag(flux[peak])) / (t[peak] - t[0])
                assert row[f"rise_rate_{band}"] == pytest.approx(expected, rel=1e-9, abs=1e-12)
                rates += 1
            else:
                assert math.isnan(row[f"rise_rate_{band}"])
            if t[-1] > t[peak]:
                expected = (_mag(flux[-1]) - _mag(flux[peak])) / (t[-1] - t[peak])
                assert row[f"decline_rate_{band}"] == pytest.approx(expected, rel=1e-9, abs=1e-12)
        if "g" in at and "r" in at:
            assert row["colour_g_r_peak"] == pytest.approx(at["g"][2] - at["r"][2], abs=1e-9)
            if abs(at["g"][0] - at["r"][0]) <= v2.COLOUR_MAX_GAP_DAYS:
                assert row["colour_g_r_latest"] == pytest.approx(at["g"][1] - at["r"][1], abs=1e-9)
                colours += 1
            else:
                assert math.isnan(row["colour_g_r_latest"])
        else:
            assert math.isnan(row["colour_g_r_peak"]) and math.isnan(row["colour_g_r_latest"])
        assert row["time_since_first_days"] == pytest.approx(max(alert["det_jd"]) - min(alert["det_jd"]), abs=1e-9)
    assert colours > 20 and rates > 20


def test_offline_context_and_sherlock_enter_as_columns():
    alerts = _decode(sorted((DATA / "ztf" / "fink_labeled" / "avro").rglob("*.avro")), "ztf")
    catalogs = load_catalogs()
    assert catalogs is not None, "run `make catalogs`"
    enriched = enrich(alerts, None, load_extinction_map(), catalogs)
    classes = ["SN", "AGN"] + [None] * (alerts.num_rows - 2)
    enriched = enriched.set_column(enriched.schema.get_field_index("sherlock_classification"),
                                   "sherlock_classification", pa.array(classes, pa.string()))
    rows = v2.compute_features(alerts, enriched).to_pylist()
    context = enriched.to_pylist()
    assert [r["varstar_match"] for r in rows] == [float(c["varstar_type"] is not None) for c in context]
    assert sum(r["varstar_match"] for r in rows) > 10
    for r, c in zip(rows, context):
        assert (r["host_separation_arcsec"] == c["host_separation_arcsec"]
                or (math.isnan(r["host_separation_arcsec"]) and c["host_separation_arcsec"] is None))
    assert (rows[0]["sherlock_sn"], rows[0]["sherlock_agn"], rows[1]["sherlock_agn"]) == (1.0, 0.0, 1.0)
    assert math.isnan(rows[2]["sherlock_sn"])  # no Sherlock answer: unknown, not "not a supernova"
    without = v2.compute_features(alerts.slice(0, 3)).to_pylist()
    assert all(math.isnan(r["varstar_match"]) and math.isnan(r["host_distance_mpc"]) for r in without)


def test_a_slice_gives_the_rows_of_the_whole_and_the_schema_records_version_2(rubin):
    alerts, features = rubin
    part = v2.compute_features(alerts.slice(5, 7))
    assert _same(part, features.slice(5, 7))
    assert feature_set_version(features.schema) == "2"
    assert features.column_names == ["candid", *v2.FEATURE_COLUMNS, "no_positive_detection"]
    assert v2.compute_features(alerts.slice(0, 0)).num_rows == 0


def test_the_version_is_a_setting_and_version_1_stays_computable(monkeypatch, local_settings, local_store, rubin):
    alerts, features = rubin
    assert configured().version == "1"  # default: the models already trained keep serving
    monkeypatch.setenv("SKYSIFT_FEATURES_VERSION", "2")
    assert configured() is feature_set("2")
    # the trainer trains on it, and inference takes it for features files that do not say
    assert FeatureSpec.current() == FeatureSpec(tuple(v2.FEATURE_COLUMNS), "2")
    assert batch_feature_set_version(pa.table({"candid": [1]})) == "2"
    local_store.write_table(ALERTS_KEY, alerts)
    result = FeaturesStage(local_settings, local_store).process(ALERTS_KEY)
    written = local_store.read_table(result.features.key)
    assert result.feature_set_version == "2" == feature_set_version(written.schema)
    assert _same(written, features)
    result = FeaturesStage(local_settings, local_store, FeaturesSettings(version="1")).process(ALERTS_KEY)
    assert feature_set_version(local_store.read_schema(result.features.key)) == core.FEATURE_SET_VERSION == "1"
    monkeypatch.setenv("SKYSIFT_FEATURES_VERSION", "3")
    with pytest.raises(ConfigError, match="SKYSIFT_FEATURES_VERSION"):
        config.load(FeaturesSettings)


def test_version_2_reads_an_enrichment_written_before_the_offline_columns(local_settings, local_store, rubin):
    alerts, _ = rubin
    enriched_key = ALERTS_KEY.replace("alerts", "enriched")
    local_store.write_table(ALERTS_KEY, alerts)
    local_store.write_table(enriched_key, pa.table({"candid": alerts["candid"], "sherlock_separation_arcsec":
                                                    pa.array([2.5] * alerts.num_rows), "ebv": [0.1] * alerts.num_rows}))
    stage = FeaturesStage(local_settings, local_store, FeaturesSettings(version="2"))
    rows = local_store.read_table(stage.process(ALERTS_KEY, enriched_key).features.key).to_pylist()
    assert all(r["sep_arcsec"] == 2.5 and math.isnan(r["varstar_match"]) for r in rows)


def test_the_columns_cover_every_band_of_every_registered_survey():
    from skysift.alerts import surveys

    for name in surveys.names():
        assert set(surveys.get(name).bands) <= set(v2.BANDS), name
