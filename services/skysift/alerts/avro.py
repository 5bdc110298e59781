"""Avro framing: split container files into blocks, frame schemaless payloads as one container, batch-decode.

Why: decoding per message (fastavro) tops out near 1.4k alerts/s, while a Rust reader (``jetliner``) decodes a
whole container to Arrow in one call several times faster, but only reads files and pays ~ms per call. So a
poll's packets that share a schema are re-framed here, without decoding them, into ONE in-memory container
(the shared header, then each packet's blocks, or each schemaless payload as its own one-record block) and
handed to ``jetliner`` once, through an anonymous in-memory file.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from dataclasses import dataclass
from functools import lru_cache

import polars as pl

MAGIC = b"Obj\x01"
HEADER_FIELD = "_framing_header"  # see with_header
SYNC = b"skysift-framing!"  # any 16 bytes: the sync marker of the containers we frame
assert len(SYNC) == 16


class FramingError(ValueError):
    """A packet is not a well-formed Avro container (truncated, bad header, bad sync marker)."""


def _zigzag(n: int) -> bytes:
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while n & ~0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _read_long(buf: bytes, pos: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        if pos >= len(buf):
            raise FramingError("truncated: unexpected end of data in a varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return (result >> 1) ^ -(result & 1), pos
        shift += 7
        if shift > 63:
            raise FramingError("malformed varint")


def _read_bytes(buf: bytes, pos: int) -> tuple[bytes, int]:
    n, pos = _read_long(buf, pos)
    if n < 0 or pos + n > len(buf):
        raise FramingError("truncated: a length runs past the end of the data")
    return buf[pos : pos + n], pos + n


@dataclass
class Container:
    """A container file split into its schema, codec and raw (still encoded) blocks."""

    schema: bytes  # the writer schema as JSON bytes, exactly as in the header
    codec: str
    blocks: list[tuple[int, bytes]]  # (record count, encoded block data)

    @property
    def n_records(self) -> int:
        return sum(count for count, _ in self.blocks)


def split_container(data: bytes) -> Container:
    """Parse a container's header and block boundaries (no record is decoded)."""
    if not data.startswith(MAGIC):
        raise FramingError("not an Avro container (missing 'Obj\\x01' magic)")
    pos = len(MAGIC)
    meta: dict[str, bytes] = {}
    while True:
        count, pos = _read_long(data, pos)
        if count == 0:
            break
        if count < 0:  # a negative count is followed by the block's byte size
            count = -count
            _, pos = _read_long(data, pos)
        for _ in range(count):
            key, pos = _read_bytes(data, pos)
            value, pos = _read_bytes(data, pos)
            meta[key.decode("utf-8", "replace")] = value
    if "avro.schema" not in meta:
        raise FramingError("Avro container header has no avro.schema")
    sync = data[pos : pos + 16]
    if len(sync) != 16:
        raise FramingError("truncated: Avro container header has no sync marker")
    pos += 16
    blocks = []
    while pos < len(data):
        count, pos = _read_long(data, pos)
        block, pos = _read_bytes(data, pos)
        if data[pos : pos + 16] != sync:
            raise FramingError("truncated or corrupt Avro container: block not followed by the sync marker")
        pos += 16
        if count < 0:
            raise FramingError("corrupt Avro container: negative record count")
        blocks.append((count, block))
    return Container(meta["avro.schema"], meta.get("avro.codec", b"null").decode() or "null", blocks)


def frame_parts(schema: bytes, codec: str, blocks: list[tuple[int, bytes]]) -> list[bytes]:
    """The pieces of one container holding ``blocks`` (already encoded with ``codec``) under ``schema``,
    unjoined, so a batch's payloads are copied once, straight into the reader's file (see read_container)."""
    meta = [(b"avro.schema", schema), (b"avro.codec", codec.encode())]
    parts = [MAGIC, _zigzag(len(meta))]
    for key, value in meta:
        parts += [_zigzag(len(key)), key, _zigzag(len(value)), value]
    parts += [_zigzag(0), SYNC]
    for count, block in blocks:
        parts += [_zigzag(count), _zigzag(len(block)), block, SYNC]
    return parts


# Image stamps end ZTF and Rubin alerts and are ~85 % of their bytes: gzipped FITS (ZTF) or FITS (Rubin)
STAMP_MAGICS = (b"\x1f\x8b\x08", b"SIMPLE  =")
MAX_STAMPS = 8
MAX_STAMP_GAP = 1024  # bytes from one stamp's end to the next one's data: union branches, file name, length
MAX_FALSE_STARTS = 8  # signature matches tried before giving up on a record


def without_stamps(blocks: list[tuple[int, bytes]]) -> list[tuple[int, memoryview] | None]:
    """Each single-record block cut where the image stamps that end its record begin; None where they were
    not found (no stamps, a null one, several records in the block, a damaged record).

    Why: jetliner's reader costs per byte of its file (it copies every block; the memfd write copies the
    payloads once more), and the stamps are ~85 % of an alert's bytes even when they are not decoded.
    The cut blocks are read with the stamp fields dropped from the schema (``inlined(schema, drop=...)``),
    which is sound when they end it: the other fields precede them, and jetliner reads a one-record block's
    record and ignores the bytes left after it. A cut that falls short of the fields read makes the decode
    fail (end of data), never decode differently, so a caller retries with the whole blocks. The stamps
    left unread are checked only as far as :func:`stamps_start` does (their lengths and the record's end).
    """
    magics = list(STAMP_MAGICS)
    out = []
    for count, data in blocks:
        start = stamps_start(data, magics) if count == 1 else None
        out.append(None if start is None else (1, memoryview(data)[:start]))
    return out


def stamps_start(record: bytes, magics: list[bytes]) -> int | None:
    """Where the first of the image stamps that end ``record`` begins (its data), or None, without decoding it.

    A stamp is an Avro ``bytes`` value starting with one of ``magics``; each one's length (the Avro long just
    before it, read backwards) must lead to the next within MAX_STAMP_GAP bytes, and the last must end the
    record exactly. The matching signature is moved first in ``magics`` (a batch's records share it).
    """
    for magic in list(magics):
        start = record.find(magic)
        for _ in range(MAX_FALSE_STARTS):
            if start < 0:
                break
            if _stamps_end_record(record, start, magic):
                if magics[0] != magic:
                    magics.remove(magic)
                    magics.insert(0, magic)
                return start
            start = record.find(magic, start + 1)
    return None


def _stamps_end_record(record: bytes, start: int, magic: bytes) -> bool:
    end = len(record)
    for _ in range(MAX_STAMPS):
        length = _long_before(record, start)
        if length is None or length <= 0:
            return False
        stop = start + length
        if stop == end:
            return True
        start = record.find(magic, stop, min(end, stop + MAX_STAMP_GAP))
        if start < 0:
            return False
    return False


def _long_before(data: bytes, pos: int) -> int | None:
    """The zigzag varint that ends right before ``pos`` (its last byte has no continuation bit), or None."""
    last = pos - 1
    if last < 0 or data[last] & 0x80:
        return None
    value, first = data[last], last
    while first > 0 and data[first - 1] & 0x80:
        first -= 1
        if last - first > 9:
            return None
        value = (value << 7) | (data[first] & 0x7F)
    return (value >> 1) ^ -(value & 1)


def frame(schema: bytes, codec: str, blocks: list[tuple[int, bytes]]) -> bytes:
    """One container holding ``blocks`` (already encoded with ``codec``) under ``schema``."""
    return b"".join(frame_parts(schema, codec, blocks))


def read_container(data: bytes | list[bytes], columns: list[str] | None = None) -> pl.DataFrame:
    """Decode a whole in-memory container (bytes, or the parts of :func:`frame_parts`) with jetliner,
    which reads files only: give it an anonymous one."""
    import jetliner

    parts = [data] if isinstance(data, (bytes, bytearray, memoryview)) else data
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("skysift-avro", os.MFD_CLOEXEC)
        try:
            _write_all(fd, parts)
            return jetliner.read_avro(f"/proc/self/fd/{fd}", columns=columns, glob=False,
                                      read_chunk_size=4 << 20, max_block_size=None)
        finally:
            os.close(fd)
    with tempfile.NamedTemporaryFile(suffix=".avro") as tmp:  # macOS and others without memfd
        tmp.writelines(parts)
        tmp.flush()
        return jetliner.read_avro(tmp.name, columns=columns, glob=False, max_block_size=None)


def _write_all(fd: int, parts: list[bytes]) -> None:
    """Gather-write ``parts`` (os.writev, up to IOV_MAX at a time), finishing any short write."""
    iov_max = os.sysconf("SC_IOV_MAX") if hasattr(os, "sysconf") else 1024
    for start in range(0, len(parts), iov_max):
        chunk = parts[start : start + iov_max]
        written = os.writev(fd, chunk)
        for part in chunk:
            if written >= len(part):
                written -= len(part)
                continue
            view = memoryview(part)[written:]
            while view:
                view = view[os.write(fd, view) :]
            written = 0


@lru_cache(maxsize=64)
def inlined(schema: bytes, drop: frozenset[str] = frozenset()) -> bytes:
    """The schema with every named-type reference replaced by its definition, without the top-level fields
    in ``drop`` (trailing ones: a record then reads as the prefix of its encoding, see :func:`without_stamps`).

    jetliner 0.2 decodes a reference to an already defined record (Rubin's ``prvDiaSources`` items are
    ``lsst.v10_0.diaSource``, ZTF's three cutouts share ``ztf.alert.cutout``) as a list of strings; the same
    schema with definitions inlined decodes right. The binary encoding does not change.
    """
    from fastavro.schema import expand_schema

    expanded = expand_schema(json.loads(schema))
    if drop:
        expanded = {**expanded, "fields": [f for f in expanded["fields"] if f["name"] not in drop]}
    return json.dumps(expanded).encode()


@lru_cache(maxsize=64)
def with_header(schema: bytes, size: int) -> bytes:
    """The record schema preceded by a ``fixed`` field of ``size`` bytes (:data:`HEADER_FIELD`), which reads a
    packet's framing header (Confluent's magic byte and schema id) as part of the record.

    Why: a Rubin packet is then a block as it came, with no copy of its ~100-260 KB to drop 5 bytes (the
    readers skip the field: no cleaner asks for it), and a dead letter is checked on the bytes as received.
    """
    parsed = json.loads(schema)
    if not isinstance(parsed, dict) or parsed.get("type") != "record":
        raise FramingError("a framed payload's writer schema must be a record")
    header = {"name": HEADER_FIELD, "type": {"type": "fixed", "name": "skysift_framing_header", "size": size}}
    return json.dumps({**parsed, "fields": [header, *parsed["fields"]]}).encode()


@lru_cache(maxsize=64)
def top_level_fields(schema: bytes) -> tuple[str, ...]:
    """Names of the record's top-level fields (cached by the schema's bytes: a poll has few schemas)."""
    parsed = json.loads(schema)
    if isinstance(parsed, list):  # a union at the top: use its first record
        parsed = next(s for s in parsed if isinstance(s, dict) and s.get("type") == "record")
    return tuple(f["name"] for f in parsed.get("fields", []))


@lru_cache(maxsize=64)
def _parsed(schema: bytes):
    import fastavro

    return fastavro.parse_schema(json.loads(schema))


def check_payload(schema: bytes, payload: bytes) -> None:
    """Decode one schemaless payload with fastavro, to find which packet of a failed batch is bad.

    Raises ValueError when the payload does not decode or leaves bytes unread (a wrong-schema payload).
    """
    import fastavro

    buf = io.BytesIO(payload)
    try:
        fastavro.schemaless_reader(buf, _parsed(schema), None)
    except Exception as exc:  # noqa: BLE001 - any decode failure makes the payload a dead letter
        raise ValueError(f"Avro decode failed: {type(exc).__name__}: {exc}") from None
    if buf.tell() != len(payload):
        raise ValueError(f"Avro payload has {len(payload) - buf.tell()} unread trailing bytes (wrong schema?)")


def check_container(container: Container) -> None:
    """Decode a container's records with fastavro (isolation path for a failed batch)."""
    import fastavro

    data = frame(container.schema, container.codec, container.blocks)
    try:
        for _ in fastavro.reader(io.BytesIO(data)):
            pass
    except Exception as exc:  # noqa: BLE001
        raise ValueError(f"Avro decode failed: {type(exc).__name__}: {exc}") from None
