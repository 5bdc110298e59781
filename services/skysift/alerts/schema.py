"""Typed Arrow schemas of the alerts and cutouts tables: the contract between ingest and every later stage.

One row per alert. Both surveys share the common columns, so enrichment, features and the labelling page
never branch on survey; survey-specific fields are extra columns that are null for the other survey.

The light curve is kept as list columns, one list per quantity, aligned element by element:
- ``det_*``: detections within ``HISTORY_DAYS`` before the alert, **including the alert itself**, sorted by jd.
- ``ul_*``: upper limits (non-detections) in the same window, kept apart from detections.
Rubin fluxes (nJy) are kept as they came and also converted to AB magnitudes
(``mag = -2.5 log10(flux) + 31.4``) so that features treat both surveys alike.
"""

from __future__ import annotations

import pyarrow as pa

HISTORY_DAYS = 30.0
ZTF_BANDS = {1: "g", 2: "r", 3: "i"}

F64 = pa.float64()
I64 = pa.int64()
I32 = pa.int32()
STR = pa.string()


def _list(t: pa.DataType) -> pa.DataType:
    return pa.list_(t)


COMMON_FIELDS: list[pa.Field] = [
    pa.field("candid", I64, nullable=False),  # ZTF candid / Rubin diaSourceId
    pa.field("objectId", STR, nullable=False),  # ZTF objectId / Rubin diaObjectId (as text)
    pa.field("survey", STR, nullable=False),  # "ztf" | "lsst"
    pa.field("schema_version", STR),
    pa.field("topic", STR),  # Kafka topic, or "replay"
    pa.field("partition", I32),
    pa.field("offset", I64),
    pa.field("source", STR),  # where the bytes came from (file path, topic)
    pa.field("ingest_time", pa.timestamp("ms", tz="UTC")),
    pa.field("jd", F64),  # Julian date of the alert's detection (Rubin: MJD TAI + 2400000.5)
    pa.field("ra", F64),
    pa.field("dec", F64),
    pa.field("band", STR),  # g, r, i (ZTF fid 1,2,3) / u g r i z y (Rubin)
    pa.field("magpsf", F64),  # AB magnitude (Rubin: from psfFlux)
    pa.field("sigmapsf", F64),
    pa.field("isdiffpos", pa.bool_()),  # positive difference ('t'/'1' in ZTF; not isNegative in Rubin)
    pa.field("drb", F64),  # ZTF deep real/bogus; Rubin `reliability`
    # light curve within HISTORY_DAYS, current alert included, sorted by jd
    pa.field("det_jd", _list(F64)),
    pa.field("det_band", _list(STR)),
    pa.field("det_magpsf", _list(F64)),
    pa.field("det_sigmapsf", _list(F64)),
    pa.field("det_isdiffpos", _list(pa.bool_())),
    pa.field("det_candid", _list(I64)),
    pa.field("ul_jd", _list(F64)),
    pa.field("ul_band", _list(STR)),
    pa.field("ul_diffmaglim", _list(F64)),
]

ZTF_FIELDS: list[pa.Field] = [
    pa.field("fid", I32),
    pa.field("programid", I32),
    pa.field("rb", F64),
    pa.field("diffmaglim", F64),
    pa.field("magnr", F64),
    pa.field("sigmagnr", F64),
    pa.field("distnr", F64),
    pa.field("ssdistnr", F64),
    pa.field("ssmagnr", F64),
    pa.field("ssnamenr", STR),
    pa.field("sgscore1", F64),
    pa.field("distpsnr1", F64),
    pa.field("classtar", F64),
    pa.field("fwhm", F64),
    pa.field("elong", F64),
    pa.field("nbad", I32),
    pa.field("ndethist", I32),
    pa.field("ncovhist", I32),
    pa.field("jdstarthist", F64),
    # Fink added values, null when the stream does not carry them
    pa.field("cdsxmatch", STR),
    pa.field("roid", I32),
    pa.field("rf_snia_vs_nonia", F64),
    pa.field("snn_snia_vs_nonia", F64),
    pa.field("snn_sn_vs_all", F64),
    pa.field("tns", STR),
    pa.field("finkclass", STR),
]

LSST_FIELDS: list[pa.Field] = [
    pa.field("psfFlux", F64),  # nJy
    pa.field("psfFluxErr", F64),
    pa.field("snr", F64),
    pa.field("det_psfflux", _list(F64)),  # nJy, aligned with det_jd
    pa.field("det_psffluxerr", _list(F64)),
    pa.field("xm_simbad_otype", STR),  # Fink's cross-match where present
]

ALERTS_SCHEMA = pa.schema(COMMON_FIELDS + ZTF_FIELDS + LSST_FIELDS, metadata={"skysift.table": "alerts", "skysift.version": "1"})

CUTOUTS_SCHEMA = pa.schema(
    [
        pa.field("candid", I64, nullable=False),
        pa.field("objectId", STR, nullable=False),
        pa.field("survey", STR, nullable=False),
        pa.field("cutout_science", pa.binary()),  # gzipped FITS as received
        pa.field("cutout_template", pa.binary()),
        pa.field("cutout_difference", pa.binary()),
    ],
    metadata={"skysift.table": "cutouts", "skysift.version": "1"},
)


def conform(table: pa.Table, schema: pa.Schema = ALERTS_SCHEMA) -> pa.Table:
    """Order and cast ``table``'s columns to ``schema``; absent nullable columns become nulls."""
    columns = []
    for field in schema:
        if field.name in table.column_names:
            column = table.column(field.name)
            columns.append(column if column.type == field.type else column.cast(field.type))  # a cast is ~50 µs
        elif field.nullable:
            columns.append(pa.nulls(table.num_rows, field.type))
        else:
            raise ValueError(f"alerts table lacks required column {field.name!r}")
    return pa.Table.from_arrays(columns, schema=schema)
