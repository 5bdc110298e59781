"""Offline context from real catalogues: the nearest galaxy (Mangrove) and a known variable star (VSX, GCVS).

Without a Lasair token (the demo, most first installs) Sherlock gives nothing; these catalogues still say whether
an alert sits on a known variable star or near a nearby galaxy. They are read once per process into sky indices
(KD-trees on unit vectors, as astropy's ``match_coordinates_sky`` builds) and a whole batch is matched in one
query per index: no per-alert loop.

The catalogues come from the ``fink-science`` wheel on PyPI and are installed next to the environment by
``skysift catalogs install`` (see :mod:`skysift.enrichment.catalog_install` for provenance and licences).
Columns, one row per alert (null when nothing is within the radius, or when the catalogues are not installed):

- ``host_name``, ``host_separation_arcsec``, ``host_distance_mpc`` (luminosity distance), ``host_offset_kpc``
  (projected: separation times Mangrove's angular-diameter distance): the nearest Mangrove galaxy within
  ``host_radius_arcsec``.
- ``varstar_catalogue`` (VSX or GCVS), ``varstar_type`` (the catalogue's variability type, e.g. ``EW``, ``RRAB``),
  ``varstar_separation_arcsec``: the nearest variable star of VSX and GCVS together within ``varstar_radius_arcsec``.
- ``offline_catalogs``: which catalogues were searched (e.g. ``fink-science 7.4.0: VSX, GCVS, Mangrove``); null
  means they were not installed, so a null match above means "not searched" rather than "nothing there".
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from skysift.errors import FailedPrecondition

log = logging.getLogger(__name__)

PROVENANCE_FILE = "PROVENANCE.json"
VARSTAR_FILES = {"VSX": "vsx.parquet", "GCVS": "gcvs.parquet"}
GALAXY_FILE = "mangrove.parquet"
ARCSEC = np.pi / (180.0 * 3600.0)  # radians
# Defaults of the enrichment settings: 1.5 arcsec is Fink's radius for VSX/GCVS; 60 arcsec reaches the disc of a
# galaxy at ~100 Mpc (30 kpc) and the projected offset says how far out an alert sits.
HOST_RADIUS_ARCSEC = 60.0
VARSTAR_RADIUS_ARCSEC = 1.5

CONTEXT_FIELDS: list[pa.Field] = [
    pa.field("host_name", pa.string()),
    pa.field("host_separation_arcsec", pa.float64()),
    pa.field("host_distance_mpc", pa.float64()),
    pa.field("host_offset_kpc", pa.float64()),
    pa.field("varstar_catalogue", pa.string()),
    pa.field("varstar_type", pa.string()),
    pa.field("varstar_separation_arcsec", pa.float64()),
    pa.field("offline_catalogs", pa.string()),
]


def default_dir() -> Path:
    """Where ``skysift catalogs install`` puts them: inside the Python environment, so each venv or image has its own."""
    return Path(sys.prefix) / "share" / "skysift" / "catalogs"


def unit_vectors(ra_deg: np.ndarray, dec_deg: np.ndarray) -> np.ndarray:
    ra, dec = np.radians(ra_deg), np.radians(dec_deg)
    cos_dec = np.cos(dec)
    return np.column_stack((cos_dec * np.cos(ra), cos_dec * np.sin(ra), np.sin(dec)))


def _chord(arcsec: float) -> float:
    return 2.0 * np.sin(arcsec * ARCSEC / 2.0)


class SkyIndex:
    """A KD-tree over catalogue positions answering "nearest entry within r" for many positions at once."""

    def __init__(self, ra_deg: np.ndarray, dec_deg: np.ndarray):
        from scipy.spatial import cKDTree

        self.size = len(ra_deg)
        self.tree = cKDTree(unit_vectors(ra_deg, dec_deg), balanced_tree=False)  # ~2x faster to build, as fast to query

    def nearest(self, ra_deg: np.ndarray, dec_deg: np.ndarray, radius_arcsec: float) -> tuple[np.ndarray, np.ndarray]:
        """(row of the nearest entry or -1, separation in arcsec or NaN) per position; NaN positions match nothing."""
        n = len(ra_deg)
        index = np.full(n, -1, dtype=np.int64)
        separation = np.full(n, np.nan)
        finite = np.isfinite(ra_deg) & np.isfinite(dec_deg)
        if not finite.any() or self.size == 0:
            return index, separation
        chord, row = self.tree.query(unit_vectors(ra_deg[finite], dec_deg[finite]), k=1,
                                     distance_upper_bound=_chord(radius_arcsec))
        hit = np.isfinite(chord)
        where = np.flatnonzero(finite)[hit]
        index[where] = row[hit]
        separation[where] = 2.0 * np.arcsin(np.minimum(chord[hit] / 2.0, 1.0)) / ARCSEC
        return index, separation


@dataclass
class OfflineCatalogs:
    """The installed catalogues with their sky indices; build with :func:`load_catalogs` (cached per process)."""

    source: str
    varstars: pa.Table  # ra, dec, type, catalogue
    varstar_index: SkyIndex
    galaxies: pa.Table  # ra, dec, name, lum_dist_mpc, ang_dist_mpc
    galaxy_index: SkyIndex

    def match(self, ra: np.ndarray, dec: np.ndarray, host_radius_arcsec: float,
              varstar_radius_arcsec: float) -> dict[str, pa.Array]:
        """The CONTEXT_FIELDS columns for positions ``ra``, ``dec`` (degrees), one value per position."""
        n = len(ra)
        g_row, g_sep = self.galaxy_index.nearest(ra, dec, host_radius_arcsec)
        v_row, v_sep = self.varstar_index.nearest(ra, dec, varstar_radius_arcsec)
        g_hit, v_hit = g_row >= 0, v_row >= 0
        # take() with null indices gives nulls where nothing matched; the tables are one chunk each (see load)
        g_take, v_take = pa.array(g_row, mask=~g_hit), pa.array(v_row, mask=~v_hit)

        def galaxy(column: str) -> pa.Array:
            return self.galaxies.column(column).chunk(0).take(g_take)

        def varstar(column: str) -> pa.Array:
            return self.varstars.column(column).chunk(0).take(v_take)

        ang_dist = galaxy("ang_dist_mpc").to_numpy(zero_copy_only=False)
        offset_kpc = g_sep * ARCSEC * ang_dist * 1000.0
        return {
            "host_name": galaxy("name"),
            "host_separation_arcsec": pa.array(g_sep, pa.float64(), mask=~g_hit),
            "host_distance_mpc": galaxy("lum_dist_mpc"),
            "host_offset_kpc": pa.array(offset_kpc, pa.float64(), mask=~(g_hit & np.isfinite(offset_kpc))),
            "varstar_catalogue": varstar("catalogue"),
            "varstar_type": varstar("type"),
            "varstar_separation_arcsec": pa.array(v_sep, pa.float64(), mask=~v_hit),
            "offline_catalogs": pa.array([self.source] * n, pa.string()),
        }


def not_searched(n: int) -> dict[str, pa.Array]:
    """The context columns when no catalogue is installed: all null, ``offline_catalogs`` included."""
    return {f.name: pa.nulls(n, f.type) for f in CONTEXT_FIELDS}


_cache: dict[Path, OfflineCatalogs] = {}
_cache_lock = threading.Lock()


def load_catalogs(directory: str | Path | None = None) -> OfflineCatalogs | None:
    """The catalogues in ``directory`` (default: :func:`default_dir`), read and indexed once per process.

    None when the default directory holds none (enrichment goes on without offline context, with a warning); a
    directory named explicitly must hold them, so a wrong path stops start-up instead of silently matching nothing.
    """
    path = Path(directory) if directory else default_dir()
    with _cache_lock:
        if path in _cache:
            return _cache[path]
        provenance = path / PROVENANCE_FILE
        if not provenance.is_file():
            if directory:
                raise FailedPrecondition(f"no offline catalogues in {path} (SKYSIFT_ENRICHMENT_CATALOGS_DIR): "
                                         f"run `skysift catalogs install --dir {path}`")
            log.warning("offline catalogues not installed: host and variable-star context stays empty; "
                        "run `skysift catalogs install` (make does it)", extra={"dir": str(path)})
            return None
        try:
            meta = json.loads(provenance.read_text())
            varstars = pa.concat_tables(
                pq.read_table(path / file).append_column("catalogue", pa.array([name] * pq.read_metadata(path / file).num_rows,
                                                                                  pa.string()))
                for name, file in VARSTAR_FILES.items()
            )
            galaxies = pq.read_table(path / GALAXY_FILE).combine_chunks()
            varstars = varstars.combine_chunks()
        except (OSError, ValueError, pa.ArrowInvalid) as exc:
            raise FailedPrecondition(f"offline catalogues in {path} cannot be read ({exc}): reinstall them with "
                                     f"`skysift catalogs install --dir {path}`") from exc
        catalogs = OfflineCatalogs(
            source=meta["source"],
            varstars=varstars,
            varstar_index=SkyIndex(_numpy(varstars, "ra"), _numpy(varstars, "dec")),
            galaxies=galaxies,
            galaxy_index=SkyIndex(_numpy(galaxies, "ra"), _numpy(galaxies, "dec")),
        )
        log.info("offline catalogues loaded", extra={"dir": str(path), "source": catalogs.source,
                                                     "variable_stars": varstars.num_rows, "galaxies": galaxies.num_rows})
        _cache[path] = catalogs
        return catalogs


def _numpy(table: pa.Table, column: str) -> np.ndarray:
    return table.column(column).combine_chunks().to_numpy(zero_copy_only=False)
