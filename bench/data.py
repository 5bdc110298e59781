"""Real alert packets from the repository, repeated to benchmark volume with distinct alert ids.

Why ids are rewritten: ingest deduplicates by candid, so 10,000 copies of 250 alerts would be 250 rows. Copy k
of an alert keeps every byte but the top-level id (ZTF ``candid``, Rubin ``diaSourceId``, the record's first
field), which becomes ``id + k * ID_STRIDE``. The id is patched in the encoded bytes (same varint length), so
the payloads stay exactly the real ones; re-encoding 10,000 ZTF alerts with fastavro would take over a minute.
The nested ``candidate.candid`` keeps the original value; the decoders read the top-level id first.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path

from skysift.alerts import avro

ZTF_DIR = Path("tests/data/alerts/ztf/avro/fink-broker_distribute")  # ZTF 4.02 as Fink distributes them, ~48 KB
RUBIN_FILES = {900: Path("tests/data/alerts/lsst/real/fink-broker_rubin_9_0"),
               1000: Path("tests/data/alerts/lsst/real/fink-client_ftransfer")}
LABELLED_DIRS = [Path("tests/data/alerts/ztf/fink_labeled/avro"), Path("tests/data/alerts/ztf/fink_labeled/avro_more"),
                 Path("tests/data/alerts/ztf/fink_labeled/parquet")]
ID_STRIDE = 1_000_000_007  # far from the spacing of real ids in one exposure; uniqueness is checked anyway


@dataclass
class Alerts:
    """Schemaless payloads of one writer schema (what Fink sends as Kafka values, the schema in the key)."""

    schema: bytes
    payloads: list[bytes]
    prefix: bytes = b""  # bytes before the payload (Rubin's Confluent header)
    ids: list[int] = field(default_factory=list)  # the alert id of each payload (candid / diaSourceId)

    def packets(self) -> list[bytes]:
        return [self.prefix + p for p in self.payloads]


def _varint_id(payload: bytes, union: bool) -> tuple[int, int, int]:
    """(id, start, end) of the record's first field, a long (or ["long", "null"] when ``union``)."""
    start = 0
    if union:
        branch, start = avro._read_long(payload, 0)
        if branch != 0:
            raise ValueError("first field is null: cannot give the copy a new id")
    value, end = avro._read_long(payload, start)
    return value, start, end


def _with_id(payload: bytes, union: bool, new_id: int) -> bytes:
    _, start, end = _varint_id(payload, union)
    encoded = avro._zigzag(new_id)
    if len(encoded) != end - start:
        raise ValueError("the new id does not encode to the same number of bytes")
    return payload[:start] + encoded + payload[end:]


def repeat(base: Alerts, n: int, union: bool) -> Alerts:
    """``n`` payloads: the base alerts in turn, copy k with its id shifted by k * ID_STRIDE."""
    out, ids, seen = [], [], set()
    for i in range(n):
        payload = base.payloads[i % len(base.payloads)]
        k = i // len(base.payloads)
        original = _varint_id(payload, union)[0]
        new_id = original + k * ID_STRIDE
        if new_id in seen:
            raise ValueError(f"id {new_id} repeated: choose another ID_STRIDE")
        seen.add(new_id)
        ids.append(new_id)
        out.append(_with_id(payload, union, new_id) if k else payload)
    return Alerts(base.schema, out, base.prefix, ids)


def ztf_base(root: Path) -> Alerts:
    """The Fink-distributed ZTF 4.02 alerts: one single-record, uncompressed container file each."""
    schema, payloads = None, []
    for path in sorted((root / ZTF_DIR).glob("*.avro")):
        container = avro.split_container(path.read_bytes())
        if container.codec != "null" or container.n_records != 1:
            continue
        if schema is not None and container.schema != schema:
            continue
        schema = container.schema
        payloads.append(container.blocks[0][1])
    if not payloads:
        raise FileNotFoundError(f"no ZTF alerts under {root / ZTF_DIR}")
    return Alerts(schema, payloads)


def ztf(root: Path, n: int) -> Alerts:
    return repeat(ztf_base(root), n, union=True)


def containers(alerts: Alerts) -> list[bytes]:
    """Each payload as its own Avro container file (as ZTF and the archive serve alerts)."""
    return [avro.frame(alerts.schema, "null", [(1, p)]) for p in alerts.payloads]


def rubin(root: Path, n: int) -> list[Alerts]:
    """Real LSSTCam alerts (schema 9.0 and 10.0) in Confluent wire format, ``n`` in all, split by schema id.

    Fink re-serialised them; they are re-encoded with the bundled Rubin schema, Fink's all-null stand-ins for
    absent records turned back into nulls, as Rubin sends them.
    """
    import fastavro

    from skysift.alerts.surveys import lsst

    groups = []
    for wire_id, folder in RUBIN_FILES.items():
        schema = lsst.schema_for_id(wire_id)
        parsed = fastavro.parse_schema(json.loads(schema))
        payloads = []
        for path in sorted((root / folder).glob("*.avro")):
            with open(path, "rb") as fh:
                for rec in fastavro.reader(fh):
                    rec = {k: None if isinstance(v, dict) and all(x is None for x in v.values()) else v
                           for k, v in rec.items()}
                    buf = io.BytesIO()
                    fastavro.schemaless_writer(buf, parsed, rec)
                    payloads.append(buf.getvalue())
        groups.append(Alerts(schema, payloads, b"\x00" + wire_id.to_bytes(4, "big")))
    total = sum(len(g.payloads) for g in groups)
    return [repeat(g, max(1, round(n * len(g.payloads) / total)), union=False) for g in groups]


def labelled_packets(root: Path) -> list[bytes]:
    """Fink's labelled ZTF alerts (containers and parquet files, with ``cdsxmatch``), as raw packets."""
    files = [p for d in LABELLED_DIRS for p in sorted((root / d).rglob("*")) if p.suffix in (".avro", ".parquet")]
    return [p.read_bytes() for p in files]
