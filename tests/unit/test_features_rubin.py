"""Rubin alerts (real LSSTCam alerts re-served by Fink) through the decoder and the feature table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from skysift.alerts.decode import decode_packets
from skysift.features.core import FEATURE_COLUMNS, LC_FEATURES, compute_features

LSST_REAL = Path(__file__).parents[1] / "data" / "alerts" / "lsst" / "real"


@pytest.fixture(scope="module")
def rubin():
    paths = sorted(LSST_REAL.rglob("*.avro")) + sorted(LSST_REAL.rglob("*.parquet"))
    alerts = decode_packets([p.read_bytes() for p in paths]).alerts["lsst"]
    return alerts, compute_features(alerts)


def test_every_rubin_alert_gets_a_row_of_the_same_columns(rubin):
    alerts, features = rubin
    assert features.num_rows == alerts.num_rows > 30
    assert features.column_names[1:-1] == FEATURE_COLUMNS


def test_band_features_come_from_ab_magnitudes_of_the_fluxes(rubin):
    alerts, features = rubin
    checked = 0
    for alert, row in zip(alerts.to_pylist(), features.to_pylist()):
        for band in ("g", "r"):
            flux = np.array([f for f, b in zip(alert["det_psfflux"], alert["det_band"]) if b == band], dtype=float)
            if len(flux) == 0:
                assert all(np.isnan(row[f"{name}_{band}"]) for name in LC_FEATURES)
                continue
            mags = -2.5 * np.log10(np.abs(flux)) + 31.4
            assert row[f"median_{band}"] == pytest.approx(np.median(mags), abs=1e-9)
            checked += 1
    assert checked > 20


def test_other_rubin_bands_count_as_detections_but_not_as_band_features(rubin):
    alerts, features = rubin
    only_other = [(a, f) for a, f in zip(alerts.to_pylist(), features.to_pylist())
                  if a["det_band"] and not {"g", "r"} & set(a["det_band"])]
    assert only_other
    for alert, row in only_other:
        assert row["ndets"] == len(alert["det_band"]) and np.isnan(row["median_g"]) and np.isnan(row["median_r"])
