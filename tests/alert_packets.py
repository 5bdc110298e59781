"""Real alert packets in each wire format, built from the real alerts in tests/data and demo/ (nothing invented).

- ZTF Avro containers: the files as they are.
- Fink's Kafka format: key = the writer schema as JSON, value = the record re-encoded schemaless (as Fink does).
- Rubin Confluent wire format: 0x00 + 4-byte schema id + the record encoded schemaless with the bundled schema.
  Fink's re-serialisation fills absent records (diaObject, ssSource, ...) with all-null structs; those are
  turned back into nulls, as Rubin sends them.
Each builder returns the decoded record beside the packet so tests can check fields against it.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import fastavro

from skysift.alerts import lsst

DATA = Path(__file__).parent / "data" / "alerts"
DEMO = Path(__file__).parent.parent / "demo" / "alerts"
ZTF_CONTAINERS = sorted((DATA / "ztf" / "avro").rglob("*.avro"))
FINK_CONTAINERS = sorted((DATA / "ztf" / "fink_labeled" / "avro").rglob("*.avro"))
RUBIN_V9 = sorted((DEMO / "lsst").glob("*.avro"))
RUBIN_V10 = DATA / "lsst" / "real" / "fink-client_ftransfer" / "part-2-918301.avro"


@dataclass
class Made:
    value: bytes
    record: dict
    key: bytes | None = None


def records(path: Path) -> tuple[dict, list[dict]]:
    with open(path, "rb") as fh:
        reader = fastavro.reader(fh)
        return reader.writer_schema, list(reader)


def ztf_containers(paths: list[Path]) -> list[Made]:
    """One packet per file (a file may hold several alerts: its first record is given)."""
    return [Made(p.read_bytes(), records(p)[1][0]) for p in paths]


def fink_packets(paths: list[Path] = FINK_CONTAINERS) -> list[Made]:
    out = []
    for path in paths:
        schema, recs = records(path)
        key = json.dumps(schema).encode()
        parsed = fastavro.parse_schema(schema)
        for rec in recs:
            buf = io.BytesIO()
            fastavro.schemaless_writer(buf, parsed, rec)
            out.append(Made(buf.getvalue(), rec, key))
    return out


def _nullify_empty(rec: dict) -> dict:
    return {k: None if isinstance(v, dict) and all(x is None for x in v.values()) else v for k, v in rec.items()}


def rubin_wire(recs: list[dict], wire_id: int) -> list[Made]:
    parsed = fastavro.parse_schema(json.loads(lsst.schema_for_id(wire_id)))
    out = []
    for rec in recs:
        rec = _nullify_empty(rec)
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, parsed, rec)
        out.append(Made(b"\x00" + wire_id.to_bytes(4, "big") + buf.getvalue(), rec))
    return out


@cache
def rubin_v9(n: int | None = None) -> list[Made]:
    return rubin_wire([r for p in RUBIN_V9[:n] for r in records(p)[1]], 900)


@cache
def rubin_v10(wire_id: int = 1000) -> list[Made]:
    """The 2026 LSSTCam alerts; 11.0 has the same fields as 10.0, so they also make valid 1100 packets."""
    return rubin_wire(records(RUBIN_V10)[1], wire_id)
