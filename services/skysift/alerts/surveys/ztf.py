"""ZTF alerts (schema 1.x to 4.02, as ZTF, BOOM, ALeRCE and Fink serve them) cleaned to alerts-table rows.

Pitfalls handled here (see tests/data/alerts/README.md): ``candid`` may exist only in ``candidate``;
``prv_candidates`` may be null; its entries with a null ``candid`` are upper limits; ``isdiffpos`` is
't'/'f' or '1'/'0'; Fink's added values are kept where the stream carries them.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import quote

import polars as pl
import pyarrow as pa

from skysift.alerts.lightcurve import ROW, assemble, col, explode_history, field, in_window, isdiffpos

F64, I32, I64, STR = pl.Float64, pl.Int32, pl.Int64, pl.String
BANDS = {1: "g", 2: "r", 3: "i"}  # fid -> band

# the ZTF columns of the alerts table, null for other surveys' alerts
FIELDS: list[pa.Field] = [
    pa.field("fid", pa.int32()),
    pa.field("programid", pa.int32()),
    pa.field("rb", pa.float64()),
    pa.field("diffmaglim", pa.float64()),
    pa.field("magnr", pa.float64()),
    pa.field("sigmagnr", pa.float64()),
    pa.field("distnr", pa.float64()),
    pa.field("ssdistnr", pa.float64()),
    pa.field("ssmagnr", pa.float64()),
    pa.field("ssnamenr", pa.string()),
    pa.field("sgscore1", pa.float64()),
    pa.field("distpsnr1", pa.float64()),
    pa.field("classtar", pa.float64()),
    pa.field("fwhm", pa.float64()),
    pa.field("elong", pa.float64()),
    pa.field("nbad", pa.int32()),
    pa.field("ndethist", pa.int32()),
    pa.field("ncovhist", pa.int32()),
    pa.field("jdstarthist", pa.float64()),
    # Fink added values, null when the stream does not carry them
    pa.field("cdsxmatch", pa.string()),
    pa.field("roid", pa.int32()),
    pa.field("rf_snia_vs_nonia", pa.float64()),
    pa.field("snn_snia_vs_nonia", pa.float64()),
    pa.field("snn_sn_vs_all", pa.float64()),
    pa.field("tns", pa.string()),
    pa.field("finkclass", pa.string()),
]

# candidate fields copied as they are (name, type)
CANDIDATE_FIELDS = [
    ("jd", F64), ("ra", F64), ("dec", F64), ("fid", I32), ("magpsf", F64), ("sigmapsf", F64), ("drb", F64),
    ("programid", I32), ("rb", F64), ("diffmaglim", F64), ("magnr", F64), ("sigmagnr", F64), ("distnr", F64),
    ("ssdistnr", F64), ("ssmagnr", F64), ("ssnamenr", STR), ("sgscore1", F64), ("distpsnr1", F64),
    ("classtar", F64), ("fwhm", F64), ("elong", F64), ("nbad", I32), ("ndethist", I32), ("ncovhist", I32),
    ("jdstarthist", F64),
]
# Fink's added values (top-level columns of its distribution)
FINK_FIELDS = [("cdsxmatch", STR), ("roid", I32), ("rf_snia_vs_nonia", F64), ("snn_snia_vs_nonia", F64),
               ("snn_sn_vs_all", F64), ("tns", STR), ("finkclass", STR)]
CUTOUTS = {"cutout_science": "cutoutScience", "cutout_template": "cutoutTemplate",
           "cutout_difference": "cutoutDifference"}

# fields of the history entries (prv_candidates) the cleaner reads
HISTORY_FIELDS = ("jd", "fid", "magpsf", "sigmapsf", "isdiffpos", "candid", "diffmaglim")

# top-level fields the cleaner reads: the decoder projects on these and skips the rest (fp_hists, lc_features)
COLUMNS = ["objectId", "candid", "schemavsn", "candidate", "prv_candidates"] + [n for n, _ in FINK_FIELDS]


def band(fid: pl.Expr) -> pl.Expr:
    return fid.replace_strict(BANDS, default=None, return_dtype=pl.String)


def clean(df: pl.DataFrame, version: str | None = None) -> pl.DataFrame:
    """One row per alert with the common and ZTF columns of the alerts table, in ``df``'s order (``_row``);
    the version is in the packet (``schemavsn``)."""
    s = df.schema
    cand = {name: field(s, "candidate", name, dtype) for name, dtype in CANDIDATE_FIELDS}
    candid = field(s, "candidate", "candid", I64)
    if "candid" in df.columns:
        candid = pl.coalesce(pl.col("candid").cast(I64, strict=False), candid)
    base = df.select(
        pl.int_range(pl.len(), dtype=pl.UInt32).alias(ROW),
        candid.alias("candid"),
        col(df, "objectId", STR).alias("objectId"),
        pl.lit("ztf").alias("survey"),
        col(df, "schemavsn", STR).alias("schema_version"),
        *[expr.alias(name) for name, expr in cand.items()],
        band(cand["fid"]).alias("band"),
        isdiffpos(field(s, "candidate", "isdiffpos", STR)).alias("isdiffpos"),
        *[col(df, name, dtype).alias(name) for name, dtype in FINK_FIELDS],
    )
    hist = explode_history(df, "prv_candidates", cand["jd"], HISTORY_FIELDS)
    hist = hist.select(  # the fields used, then the window: filtering all ~60 history fields costs more
        pl.col(ROW),
        pl.col("_cur_jd"),
        col(hist, "jd", F64).alias("jd"),
        band(col(hist, "fid", I32)).alias("band"),
        col(hist, "magpsf", F64).alias("magpsf"),
        col(hist, "sigmapsf", F64).alias("sigmapsf"),
        isdiffpos(col(hist, "isdiffpos", STR)).alias("isdiffpos"),
        col(hist, "candid", I64).alias("candid"),
        col(hist, "diffmaglim", F64).alias("diffmaglim"),
    ).filter(in_window(pl.col("jd"))).drop("_cur_jd")
    current = base.select(ROW, "jd", "band", "magpsf", "sigmapsf", "isdiffpos", "candid")
    detections = pl.concat([current, hist.filter(pl.col("candid").is_not_null()).drop("diffmaglim")])
    upper_limits = hist.filter(pl.col("candid").is_null()).select(ROW, "jd", "band", "diffmaglim")
    return assemble(base, detections, upper_limits)


def cutouts(df: pl.DataFrame, alerts: pl.DataFrame) -> pl.DataFrame:
    """The three stamps (gzipped FITS as received) beside candid/objectId, in the same row order."""
    stamps = [field(df.schema, src, "stampData", pl.Binary).alias(dst) if isinstance(df.schema.get(src), pl.Struct)
              else col(df, src, pl.Binary).alias(dst) for dst, src in CUTOUTS.items()]
    return pl.concat([alerts.select("candid", "objectId", "survey"), df.select(stamps)], how="horizontal")


class Ztf:
    """ZTF behind the :class:`~skysift.alerts.surveys.Survey` protocol."""

    name = "ztf"
    fields = FIELDS
    columns = COLUMNS
    cutouts = CUTOUTS
    bands = tuple(BANDS.values())
    # Palomar's nights fall within one UTC date, which ZTF's archive and Fink name them by
    night_shift_hours = 0.0
    lasair_api = "https://lasair-ztf.lsst.ac.uk/api"
    score_name = "drb"  # deep real/bogus

    def detect(self, fields: Sequence[str]) -> bool:
        return "candidate" in fields

    def wire_schema(self, wire_id: int) -> tuple[bytes, str] | None:
        return None  # ZTF serves Avro containers, never the Confluent wire format

    def clean(self, df: pl.DataFrame, version: str | None) -> pl.DataFrame:
        return clean(df, version)

    def cut(self, df: pl.DataFrame, alerts: pl.DataFrame) -> pl.DataFrame:
        return cutouts(df, alerts)

    def links(self, object_id: str) -> dict[str, str]:
        oid = quote(object_id)
        return {"Lasair": f"https://lasair-ztf.lsst.ac.uk/objects/{oid}/", "Fink": f"https://fink-portal.org/{oid}",
                "ALeRCE": f"https://alerce.online/object/{oid}"}


SURVEY = Ztf()
