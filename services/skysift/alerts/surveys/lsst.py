"""Rubin (LSST) alerts, schemas 9.0 to 11.0, cleaned to alerts-table rows; the bundled schemas by wire id.

On the live stream a Rubin alert is in Confluent wire format: byte 0, a 4-byte big-endian schema id
(major*100 + minor, e.g. 1100 for 11.0), then schemaless Avro; the schemas are bundled in ``schemas/lsst``
(from lsst/alert_packet). Fluxes are nJy; magnitudes are derived as AB ``-2.5 log10(|flux|) + 31.4`` with
``isdiffpos`` carrying the sign (as ZTF's ``magpsf`` does for negative differences).

History: ``prvDiaSources`` are detections; ``prvDiaForcedSources`` on visits with no detection are the
non-detections, with a 5-sigma limiting magnitude ``-2.5 log10(5 psfFluxErr) + 31.4`` as ``ul_diffmaglim``.
``objectId`` is ``diaObject.diaObjectId``, else ``diaSource.diaObjectId`` (diaObject may be null), else
``"ss" + ssObjectId`` for solar-system sources that have no diaObject (Rubin writes 0 for "no id").
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from urllib.parse import quote

import polars as pl
import pyarrow as pa
from fastavro.schema import load_schema

from skysift.alerts.lightcurve import DET_COLUMNS, ROW, assemble, col, explode_history, field, in_window

SCHEMA_DIR = Path(__file__).parent.parent / "schemas" / "lsst"
MJD_TO_JD = 2400000.5
AB_ZEROPOINT_NJY = 31.4
MAG_ERR = 2.5 / 2.302585092994046  # 1.0857: d(mag) = 1.0857 dflux/flux
UL_SIGMA = 5.0

F64, I32, I64, STR = pl.Float64, pl.Int32, pl.Int64, pl.String

# the Rubin columns of the alerts table, null for other surveys' alerts
FIELDS: list[pa.Field] = [
    pa.field("psfFlux", pa.float64()),  # nJy
    pa.field("psfFluxErr", pa.float64()),
    pa.field("snr", pa.float64()),
    pa.field("det_psfflux", pa.list_(pa.float64())),  # nJy, aligned with det_jd
    pa.field("det_psffluxerr", pa.list_(pa.float64())),
    pa.field("xm_simbad_otype", pa.string()),  # Fink's cross-match where present
]
BANDS = ("u", "g", "r", "i", "z", "y")

COLUMNS = ["diaSourceId", "diaSource", "prvDiaSources", "prvDiaForcedSources", "diaObject", "lsst_schema_version",
           "xm"]
CUTOUTS = {"cutout_science": "cutoutScience", "cutout_template": "cutoutTemplate",
           "cutout_difference": "cutoutDifference"}


def bundled_versions() -> list[str]:
    return sorted((p.name for p in SCHEMA_DIR.iterdir() if p.is_dir()), key=lambda v: tuple(map(int, v.split("."))))


def schema_id(version: str) -> int:
    """'11.0' -> 1100, the id Rubin puts in the Confluent wire header."""
    major, minor = (int(x) for x in version.split("."))
    return major * 100 + minor


@lru_cache(maxsize=None)
def schema_for_id(wire_id: int) -> bytes:
    """The full (named types inlined) alert schema JSON for a wire schema id; KeyError if not bundled."""
    major, minor = divmod(wire_id, 100)
    path = SCHEMA_DIR / f"{major}.{minor}" / f"lsst.v{major}_{minor}.alert.avsc"
    if not path.is_file():
        raise KeyError(f"unknown Rubin schema id {wire_id} ({major}.{minor}); bundled: {', '.join(bundled_versions())}")
    return json.dumps(load_schema(str(path), _write_hint=False)).encode()


def _id(expr: pl.Expr) -> pl.Expr:
    """Rubin writes 0 for "no such object": make it null."""
    return pl.when(expr != 0).then(expr)


def magnitude(flux: pl.Expr) -> pl.Expr:
    return pl.when(flux != 0).then(-2.5 * flux.abs().log10() + AB_ZEROPOINT_NJY)


def magnitude_error(flux: pl.Expr, flux_err: pl.Expr) -> pl.Expr:
    return pl.when(flux != 0).then(MAG_ERR * flux_err / flux.abs())


# fields of a diaSource-shaped record _source_columns reads, and of a forced source the cleaner reads
SOURCE_FIELDS = ("midpointMjdTai", "band", "psfFlux", "psfFluxErr", "isNegative", "diaSourceId")
FORCED_FIELDS = ("midpointMjdTai", "band", "psfFluxErr", "visit")


def _source_columns(frame: pl.DataFrame, get) -> list[pl.Expr]:
    """Detection columns from a diaSource-shaped record; ``get(name, dtype)`` reads one of its fields."""
    flux, err = get("psfFlux", F64), get("psfFluxErr", F64)
    negative = get("isNegative", pl.Boolean)
    return [
        (get("midpointMjdTai", F64) + MJD_TO_JD).alias("jd"),
        get("band", STR).alias("band"),
        magnitude(flux).alias("magpsf"),
        magnitude_error(flux, err).alias("sigmapsf"),
        pl.coalesce(negative.not_(), flux > 0).alias("isdiffpos"),
        get("diaSourceId", I64).alias("candid"),
        flux.alias("psfflux"),
        err.alias("psffluxerr"),
    ]


def clean(df: pl.DataFrame, version: str | None = None) -> pl.DataFrame:
    """One row per alert with the common and Rubin columns of the alerts table, in ``df``'s order (``_row``)."""
    s = df.schema

    def src(name, dtype):
        return field(s, "diaSource", name, dtype)

    object_id = pl.coalesce(_id(field(s, "diaObject", "diaObjectId", I64)), _id(src("diaObjectId", I64))).cast(STR)
    object_id = pl.coalesce(object_id, pl.lit("ss") + _id(src("ssObjectId", I64)).cast(STR))
    version_expr = col(df, "lsst_schema_version", STR).str.extract(r"(\d+[._]\d+)$").str.replace("_", ".")
    if version:
        version_expr = pl.coalesce(version_expr, pl.lit(version))
    alert_id = src("diaSourceId", I64)
    if "diaSourceId" in df.columns:  # the alert's id, equal to diaSource.diaSourceId
        alert_id = pl.coalesce(pl.col("diaSourceId").cast(I64), alert_id)
    base = df.select(
        pl.int_range(pl.len(), dtype=pl.UInt32).alias(ROW),
        *_source_columns(df, src),
        object_id.alias("objectId"),
        pl.lit("lsst").alias("survey"),
        version_expr.alias("schema_version"),
        src("ra", F64).alias("ra"),
        src("dec", F64).alias("dec"),
        src("reliability", F64).alias("drb"),
        src("snr", F64).alias("snr"),
        field(s, "xm", "simbad_otype", STR).alias("xm_simbad_otype"),
        src("visit", I64).alias("_visit"),
    ).with_columns(df.select(alert_id).to_series().alias("candid"),
                   pl.col("psfflux").alias("psfFlux"), pl.col("psffluxerr").alias("psfFluxErr"))

    current_jd = src("midpointMjdTai", F64) + MJD_TO_JD
    prv = explode_history(df, "prvDiaSources", current_jd, (*SOURCE_FIELDS, "visit"))
    prv = prv.select(ROW, "_cur_jd", *_source_columns(prv, lambda n, t: col(prv, n, t)),  # the fields used, then
                     col(prv, "visit", I64).alias("_visit")).filter(in_window(pl.col("jd"))).drop("_cur_jd")  # the window
    current = base.select(ROW, "jd", "band", "magpsf", "sigmapsf", "isdiffpos", "candid", "psfflux", "psffluxerr",
                          "_visit")
    detections = pl.concat([current, prv])

    forced = explode_history(df, "prvDiaForcedSources", current_jd, FORCED_FIELDS)
    forced = forced.select(
        ROW,
        "_cur_jd",
        (col(forced, "midpointMjdTai", F64) + MJD_TO_JD).alias("jd"),
        col(forced, "band", STR).alias("band"),
        (-2.5 * (UL_SIGMA * col(forced, "psfFluxErr", F64)).log10() + AB_ZEROPOINT_NJY).alias("diffmaglim"),
        col(forced, "visit", I64).alias("_visit"),
    ).filter(in_window(pl.col("jd"))).drop("_cur_jd")
    upper_limits = forced.join(detections.select(ROW, "_visit"), on=[ROW, "_visit"], how="anti")
    return assemble(base.drop("_visit"), detections.drop("_visit"), upper_limits.drop("_visit"),
                    det_columns=[*DET_COLUMNS, "psfflux", "psffluxerr"])


def cutouts(df: pl.DataFrame, alerts: pl.DataFrame) -> pl.DataFrame:
    """The three stamps (FITS bytes as received) beside candid/objectId, in the same row order."""
    stamps = [col(df, src, pl.Binary).alias(dst) for dst, src in CUTOUTS.items()]
    return pl.concat([alerts.select("candid", "objectId", "survey"), df.select(stamps)], how="horizontal")


class Lsst:
    """Rubin behind the :class:`~skysift.alerts.surveys.Survey` protocol."""

    name = "lsst"
    fields = FIELDS
    columns = COLUMNS
    cutouts = CUTOUTS
    bands = BANDS
    # Cerro Pachon's nights cross UTC midnight; Rubin names them by dayObs, the date in UTC-12h
    night_shift_hours = -12.0
    lasair_api = "https://lasair.lsst.ac.uk/api"
    score_name = "reliability"

    def detect(self, fields: Sequence[str]) -> bool:
        return "diaSource" in fields

    def wire_schema(self, wire_id: int) -> tuple[bytes, str] | None:
        """Rubin's schema ids are major*100 + minor; KeyError for an id of no bundled schema."""
        major, minor = divmod(wire_id, 100)
        return schema_for_id(wire_id), f"{major}.{minor}"

    def clean(self, df: pl.DataFrame, version: str | None) -> pl.DataFrame:
        return clean(df, version)

    def cut(self, df: pl.DataFrame, alerts: pl.DataFrame) -> pl.DataFrame:
        return cutouts(df, alerts)

    def links(self, object_id: str) -> dict[str, str]:
        """Pages of the brokers' LSST sites, by diaObjectId: a solar-system source without a diaObject
        (objectId ``ss<ssObjectId>``) has none."""
        if not object_id.isdigit():
            return {}
        oid = quote(object_id)
        return {"Lasair": f"https://lasair.lsst.ac.uk/objects/{oid}/", "Fink": f"https://lsst.fink-portal.org/{oid}",
                "ALeRCE": f"https://lsst.alerce.online/object/{oid}?survey=lsst"}


SURVEY = Lsst()
