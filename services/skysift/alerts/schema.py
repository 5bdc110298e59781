"""Typed Arrow schemas of the alerts and cutouts tables: the contract between ingest and every later stage.

One row per alert. Every survey shares the common columns, so enrichment, features and the labelling page
never branch on survey; survey-specific fields are extra columns, declared by each survey's module
(:mod:`skysift.alerts.surveys`, whose ``alerts_schema()`` is the whole alerts table), null for other surveys.

The light curve is kept as list columns, one list per quantity, aligned element by element:
- ``det_*``: detections within ``HISTORY_DAYS`` before the alert, **including the alert itself**, sorted by jd.
- ``ul_*``: upper limits (non-detections) in the same window, kept apart from detections.
Rubin fluxes (nJy) are kept as they came and also converted to AB magnitudes
(``mag = -2.5 log10(flux) + 31.4``) so that features treat both surveys alike.
"""

from __future__ import annotations

import pyarrow as pa

HISTORY_DAYS = 30.0

F64 = pa.float64()
I64 = pa.int64()
I32 = pa.int32()
STR = pa.string()


def _list(t: pa.DataType) -> pa.DataType:
    return pa.list_(t)


COMMON_FIELDS: list[pa.Field] = [
    pa.field("candid", I64, nullable=False),  # ZTF candid / Rubin diaSourceId
    pa.field("objectId", STR, nullable=False),  # ZTF objectId / Rubin diaObjectId (as text)
    pa.field("survey", STR, nullable=False),  # a registered survey's name: "ztf", "lsst"
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


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
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
