"""Decode a poll's raw packets, in batches, into clean alerts tables (one per survey) and dead letters.

Formats, detected per packet (``format="auto"``) or configured per topic:
- ``avro``: an Avro container file (``Obj\\x01``), as ZTF, BOOM and the ZTF archive serve alerts;
- ``confluent``: byte 0 + 4-byte schema id + schemaless Avro (Rubin), with the schemas the surveys bundle;
- ``schemaless``: schemaless Avro whose schema comes with the packet (Fink: the Kafka key holds the schema JSON);
- ``parquet``: a parquet file of whole alerts (``PAR1``), as Fink's data transfer and test sets ship them.

Which survey a packet belongs to, and how its records are cleaned, is the survey registry's answer
(:mod:`skysift.alerts.surveys`); a record no registered survey recognises is a dead letter.

Packets that share a writer schema are framed as ONE container and decoded in one call (see
:mod:`skysift.alerts.avro`); a batch that fails is re-checked packet by packet with fastavro so that only
the bad packets become dead letters. Decoded rows whose identifiers or coordinates are implausible (a payload
read with the wrong schema can decode "successfully" into garbage) are dead letters too.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from skysift.alerts import avro, surveys
from skysift.alerts.lightcurve import ROW
from skysift.alerts.schema import CUTOUTS_SCHEMA, conform
from skysift.alerts.surveys import Survey, UnknownSurvey

FORMATS = ("auto", "avro", "confluent", "schemaless", "parquet")
CONFLUENT_MAGIC = b"\x00"
CONFLUENT_HEADER = 5  # the magic byte and a 4-byte big-endian schema id
PARQUET_MAGIC = b"PAR1"


@dataclass
class Packet:
    """One raw message and where it came from (topic/partition/offset for Kafka, a path for replay)."""

    value: bytes
    schema: bytes | None = None  # writer schema JSON of a schemaless payload (Fink's Kafka key)
    format: str = "auto"
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    source: str | None = None
    key: bytes | None = None  # the Kafka key and headers, kept so a dead letter can be decoded again as it came
    headers: list[tuple[str, bytes]] | None = None


@dataclass
class DecodeResult:
    alerts: dict[str, pa.Table] = field(default_factory=dict)  # survey -> surveys.alerts_schema() table
    cutouts: dict[str, pa.Table] = field(default_factory=dict)  # survey -> CUTOUTS_SCHEMA table
    dead_letters: list[tuple[bytes, str]] = field(default_factory=list)  # (raw bytes, error)
    dead_packets: list[Packet] = field(default_factory=list)  # aligned with dead_letters: where each came from
    n_packets: int = 0

    @property
    def n_alerts(self) -> int:
        return sum(t.num_rows for t in self.alerts.values())


@dataclass
class _Group:
    """Packets sharing one writer schema and codec: decoded together."""

    schema: bytes
    codec: str
    version: str | None = None
    members: list[tuple[int, list[tuple[int, bytes]]]] = field(default_factory=list)  # (packet index, blocks)


class _Dead(Exception):
    pass


def packets_of(packets: list[bytes], format: str = "auto", schema_json: str | bytes | None = None) -> list[Packet]:
    """Raw packets of one format as :class:`Packet` (``schema_json``: the writer schema of schemaless payloads)."""
    schema = schema_json.encode() if isinstance(schema_json, str) else schema_json
    return [Packet(p, schema=schema, format=format) for p in packets]


def decode_packets(packets: list[bytes], format: str = "auto", schema_json: str | bytes | None = None,
                   keep_cutouts: bool = False) -> DecodeResult:
    """Decode raw packets of one format (``schema_json``: the writer schema of schemaless payloads)."""
    return decode(packets_of(packets, format, schema_json), keep_cutouts=keep_cutouts)


def decode(packets: list[Packet], keep_cutouts: bool = False, now: datetime | None = None) -> DecodeResult:
    """Decode packets of any formats and surveys; every packet ends up as rows or as a dead letter."""
    now = now or datetime.now(timezone.utc)
    result = DecodeResult(n_packets=len(packets))
    dead: dict[int, str] = {}
    groups: dict[tuple[bytes, str], _Group] = {}
    parquet: list[int] = []
    for i, packet in enumerate(packets):
        if packet.format == "parquet" or (packet.format == "auto" and packet.value.startswith(PARQUET_MAGIC)):
            parquet.append(i)
            continue
        try:
            schema, codec, blocks, version = _split(packet)
        except (avro.FramingError, _Dead, KeyError, ValueError) as exc:
            dead[i] = _message(exc)
            continue
        groups.setdefault((schema, codec), _Group(schema, codec, version)).members.append((i, blocks))

    frames: dict[str, list[pl.DataFrame]] = {}
    stamps: dict[str, list[pl.DataFrame]] = {}
    decoded = [_decode_group(group, packets, dead, keep_cutouts, now) for group in groups.values()]
    decoded += [_decode_parquet(i, packets, dead, keep_cutouts, now) for i in parquet]
    for survey, cleaned, cut in decoded:
        if cleaned is not None and cleaned.height:
            frames.setdefault(survey, []).append(cleaned)
            if cut is not None:
                stamps.setdefault(survey, []).append(cut)

    alerts_schema = surveys.alerts_schema()
    for survey, parts in frames.items():
        result.alerts[survey] = conform(_to_arrow(pl.concat(parts, how="diagonal_relaxed")), alerts_schema)
    for survey, parts in stamps.items():
        result.cutouts[survey] = conform(_to_arrow(pl.concat(parts, how="diagonal_relaxed")), CUTOUTS_SCHEMA)
    for i in sorted(dead):
        result.dead_letters.append((packets[i].value, dead[i]))
        result.dead_packets.append(packets[i])
    return result


def _message(exc: BaseException) -> str:
    return str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)


def _split(packet: Packet) -> tuple[bytes, str, list[tuple[int, bytes]], str | None]:
    """(writer schema, codec, encoded blocks, schema version) of one packet, without decoding it."""
    data, fmt = packet.value, packet.format
    if fmt not in FORMATS:
        raise _Dead(f"unknown packet format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if not data:
        raise _Dead("empty message")
    if fmt in ("auto", "avro") and data.startswith(avro.MAGIC):
        container = avro.split_container(data)
        if not container.n_records:  # else the message would vanish: neither rows nor a dead letter
            raise _Dead("Avro container holds no alerts (no records after the header)")
        return container.schema, container.codec, container.blocks, None
    if fmt == "avro":
        raise _Dead("not an Avro container (missing 'Obj\\x01' magic)")
    if fmt == "confluent" or (fmt == "auto" and packet.schema is None and data[:1] == CONFLUENT_MAGIC):
        if len(data) <= CONFLUENT_HEADER or data[:1] != CONFLUENT_MAGIC:
            raise _Dead("not in Confluent wire format (0x00 + 4-byte schema id + payload)")
        schema, version = surveys.wire_schema(int.from_bytes(data[1:CONFLUENT_HEADER], "big"))
        # the header read as the record's first field: the packet is a block as it came, never copied
        return avro.with_header(schema, CONFLUENT_HEADER), "null", [(1, data)], version
    if packet.schema:
        return packet.schema, "null", [(1, data)], None
    raise _Dead("cannot tell the packet format: not an Avro container, not Confluent wire format, and no writer "
                "schema given (Fink puts it in the Kafka key)")


def _decode_group(group: _Group, packets: list[Packet], dead: dict[int, str], keep_cutouts: bool, now: datetime):
    try:
        fields = avro.top_level_fields(group.schema)
        avro.inlined(group.schema)
    except Exception as exc:  # noqa: BLE001 - whatever the schema's fault, its packets are dead letters
        fields, error = (), f"writer schema is not a valid Avro record schema: {exc}"
    try:
        survey = surveys.detect(fields)
    except UnknownSurvey as exc:
        for i, _ in group.members:
            dead[i] = error if not fields else str(exc)
        return None, None, None
    columns = read_columns(survey, fields, keep_cutouts)
    stamps = trailing_stamps(survey, fields) if not keep_cutouts and group.codec == "null" else frozenset()

    members = group.members
    try:
        df = _read(group, members, columns, stamps)
    except BaseException as exc:  # noqa: BLE001 - includes the Rust reader's PanicException on garbage
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        members = _isolate(group, members, dead)
        try:
            df = _read(group, members, columns, stamps)
        except BaseException as again:  # noqa: BLE001
            if isinstance(again, (KeyboardInterrupt, SystemExit)):
                raise
            # fastavro passed a packet the Rust reader refuses (it reads any non-zero byte as true, for one):
            # read the rest one by one so that a good neighbour is never a dead letter
            df, members = _read_each(group, members, columns, dead)
            if not members:
                return survey.name, None, None

    counts = [sum(c for c, _ in blocks) for _, blocks in members]
    origin = np.repeat(np.array([i for i, _ in members], dtype=np.int64), counts)
    return (survey.name, *_clean(survey, df, origin, group.version, packets, dead, keep_cutouts, now))


def _decode_parquet(i: int, packets: list[Packet], dead: dict[int, str], keep_cutouts: bool, now: datetime):
    try:
        pf = pq.ParquetFile(io.BytesIO(packets[i].value))
        names = pf.schema_arrow.names
        survey = surveys.detect(names)
        df = pl.from_arrow(pf.read(columns=read_columns(survey, names, keep_cutouts)))
    except Exception as exc:  # noqa: BLE001 - a file that does not read is a dead letter, the poll goes on
        dead[i] = str(exc) if isinstance(exc, UnknownSurvey) else f"parquet read failed: {exc}"
        return None, None, None
    return (survey.name, *_clean(survey, df, np.full(df.height, i, dtype=np.int64), None, packets, dead, keep_cutouts, now))


def _clean(survey: Survey, df: pl.DataFrame, origin: np.ndarray, version: str | None, packets: list[Packet],
           dead: dict[int, str], keep_cutouts: bool, now: datetime):
    """Clean decoded records; rows of implausible packets become dead letters; attach where each row came from."""
    cleaned = survey.clean(df, version).with_columns(pl.Series("_packet", origin))
    for i in cleaned.select(pl.col("_packet").filter(~_plausible()).unique()).to_series().to_list():
        dead[i] = "decoded values are implausible (missing ids, jd or coordinates out of range): wrong schema?"
    keep = ~pl.col("_packet").is_in(list(dead))
    cut = survey.cut(df, cleaned).with_columns(pl.Series("_packet", origin)).filter(keep) if keep_cutouts else None
    if dead:  # else every row is kept: no copy of the table
        cleaned = cleaned.filter(keep)
    cleaned = cleaned.with_columns(_meta(packets, cleaned.get_column("_packet"), now))
    return cleaned.drop(ROW, "_packet"), cut.drop("_packet") if cut is not None else None


def read_columns(survey: Survey, names, keep_cutouts: bool) -> list[str]:
    """The top-level fields the cleaner reads: the readers skip the rest (and the stamps unless kept)."""
    wanted = survey.columns + (list(survey.cutouts.values()) if keep_cutouts else [])
    return [c for c in wanted if c in names]


def trailing_stamps(survey: Survey, fields) -> frozenset[str]:
    """The stamp fields when they end the schema (as in every ZTF and Rubin schema), else none: only then
    can they be cut off unread."""
    stamps = set(survey.cutouts.values())
    first = next((i for i, name in enumerate(fields) if name in stamps), None)
    return frozenset(fields[first:]) if first is not None and stamps.issuperset(fields[first:]) else frozenset()


def _read(group: _Group, members, columns: list[str], stamps: frozenset[str] = frozenset()) -> pl.DataFrame:
    """Decode the members in one call; with trailing ``stamps`` (not kept), these are cut off first where
    they are found (see avro.without_stamps), falling back to the whole payloads when that fails."""
    blocks = [b for _, bs in members for b in bs]
    if stamps:
        try:
            return _read_cut(group, blocks, columns, stamps)
        except BaseException as exc:  # noqa: BLE001 - includes the Rust reader's PanicException
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
    return _read_blocks(avro.inlined(group.schema), group.codec, blocks, columns)


def _read_cut(group: _Group, blocks, columns: list[str], stamps: frozenset[str]) -> pl.DataFrame:
    """The cut blocks read without the stamp fields, the others (stamps not found) whole, rows in block order."""
    cut = avro.without_stamps(blocks)
    whole = [b for b, c in zip(blocks, cut) if c is None]
    if len(whole) == len(blocks):
        return _read_blocks(avro.inlined(group.schema), group.codec, blocks, columns)
    df = _read_blocks(avro.inlined(group.schema, stamps), group.codec, [c for c in cut if c is not None], columns)
    if not whole:
        return df
    df = pl.concat([df, _read_blocks(avro.inlined(group.schema), group.codec, whole, columns)], how="vertical_relaxed")
    was_cut = np.repeat(np.array([c is not None for c in cut]), [count for count, _ in blocks])
    order = np.concatenate([np.flatnonzero(was_cut), np.flatnonzero(~was_cut)])  # row i of df is record order[i]
    return df[np.argsort(order, kind="stable")]


def _read_blocks(schema: bytes, codec: str, blocks, columns: list[str]) -> pl.DataFrame:
    expected = sum(c for c, _ in blocks)
    df = avro.read_container(avro.frame_parts(schema, codec, blocks), columns)
    if df.height != expected:
        raise ValueError(f"decoded {df.height} records, expected {expected}")
    return df


def _read_each(group: _Group, members, columns: list[str], dead: dict[int, str]):
    """Decode each packet on its own; those that fail alone become dead letters. (frame or None, good members)"""
    frames, good = [], []
    for member in members:
        try:
            frames.append(_read(group, [member], columns))
            good.append(member)
        except BaseException as exc:  # noqa: BLE001 - includes the Rust reader's PanicException on garbage
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            dead[member[0]] = f"batch decode failed: {type(exc).__name__}: {exc}"
    return (pl.concat(frames, how="vertical_relaxed") if frames else None), good


def _isolate(group: _Group, members, dead: dict[int, str]):
    """Check each packet of a failed batch on its own; return the good ones, record the bad as dead letters."""
    good = []
    for i, blocks in members:
        try:
            if len(blocks) == 1 and blocks[0][0] == 1 and group.codec == "null":
                avro.check_payload(group.schema, blocks[0][1])
            else:
                avro.check_container(avro.Container(group.schema, group.codec, blocks))
            good.append((i, blocks))
        except ValueError as exc:
            dead[i] = str(exc)
    return good


def _plausible() -> pl.Expr:
    return (pl.col("candid").is_not_null() & (pl.col("objectId").str.len_bytes() > 0)
            & pl.col("jd").is_between(2_400_000.0, 2_600_000.0)
            & pl.col("ra").is_between(0.0, 360.0) & pl.col("dec").is_between(-90.0, 90.0)).fill_null(False)


def _meta(packets: list[Packet], origin: pl.Series, now: datetime) -> list[pl.Series | pl.Expr]:
    """Where each row came from: one value per packet, gathered by the rows' packet index."""
    idx = origin.to_numpy()

    def pick(attr: str, dtype: pl.DataType) -> pl.Series:
        return pl.Series(attr, [getattr(p, attr) for p in packets], dtype=dtype).gather(idx)
    return [pick("topic", pl.String), pick("partition", pl.Int32), pick("offset", pl.Int64), pick("source", pl.String),
            pl.lit(now, dtype=pl.Datetime("ms", "UTC")).alias("ingest_time")]


def _to_arrow(df: pl.DataFrame) -> pa.Table:
    return df.to_arrow(compat_level=pl.CompatLevel.oldest())
