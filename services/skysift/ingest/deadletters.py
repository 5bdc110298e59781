"""Dead letters: the files a poll writes for packets it could not decode, what `skysift dlq list` shows of them,
and the source that re-drives them (`skysift dlq replay`, a poll of ``dlq://ingest/``) once the cause is fixed.

Why a poll source rather than a decoder call: a re-driven letter then takes the very path a polled message takes
(decode with the current settings, filter, deduplicate by candid, write, commit), so an alert stored meanwhile is
not stored twice and a letter that fails again is written as a new dead letter with its new error before the old
letter is removed (at the poll's commit, after everything else is durable). A Kafka letter is rebuilt as the
consumer builds the message, from its key and headers (Fink's writer schema travels in the key) and the current
``SKYSIFT_KAFKA_*`` format and schema settings.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from datetime import datetime

import pyarrow as pa

from skysift.alerts.decode import Packet
from skysift.errors import InvalidArgument
from skysift.ingest.kafka import KAFKA_SOURCE_PREFIX, kafka_packet, writer_schema
from skysift.ingest.replay import records_in
from skysift.ingest.settings import KafkaSettings
from skysift.store.base import ObjectStore, store_errors
from skysift.store.keys import dlq_key

SCHEME = "dlq://"
PREFIX = "dlq/ingest/"
SCHEMA = pa.schema([
    pa.field("raw", pa.binary()), pa.field("error", pa.string()), pa.field("topic", pa.string()),
    pa.field("partition", pa.int32()), pa.field("offset", pa.int64()), pa.field("source", pa.string()),
    pa.field("ingest_time", pa.timestamp("ms", tz="UTC")),
    pa.field("key", pa.binary()),  # Kafka's (Fink's writer schema travels there)
    pa.field("headers", pa.list_(pa.struct([pa.field("key", pa.string()), pa.field("value", pa.binary())]))),
])
_NIGHT = re.compile(r"/night=(\d{8})/")
REASON_CHARS = 160
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def reason(error: str | None) -> str:
    """An error as a reason to group letters by: its first line, numbers (ids, offsets, byte positions) as '#'."""
    return _NUMBER.sub("#", (error or "").strip().split("\n", 1)[0])[:REASON_CHARS]


def letters_table(decoded, now: datetime) -> pa.Table:
    """A poll's dead letters (a :class:`~skysift.alerts.decode.DecodeResult`'s) as one dead-letter file."""
    packets = decoded.dead_packets
    return pa.table({
        "raw": [raw for raw, _ in decoded.dead_letters],
        "error": [err for _, err in decoded.dead_letters],
        "topic": [p.topic for p in packets],
        "partition": [p.partition for p in packets],
        "offset": [p.offset for p in packets],
        "source": [p.source for p in packets],
        "ingest_time": [now] * len(packets),
        "key": [p.key for p in packets],
        "headers": [[{"key": k, "value": v} for k, v in p.headers] if p.headers is not None else None
                    for p in packets],
    }, schema=SCHEMA)


def write_letters(store: ObjectStore, decoded, now: datetime) -> str:
    key = dlq_key("ingest", now)
    store.write_table(key, letters_table(decoded, now))
    return key


def read_letters(store: ObjectStore, key: str) -> pa.Table:
    """A dead-letter file in :data:`SCHEMA` (files written before the key and headers were kept get nulls)."""
    table = store.read_table(key)
    return pa.table({f.name: table.column(f.name).cast(f.type) if f.name in table.column_names
                     else pa.nulls(table.num_rows, f.type) for f in SCHEMA}, schema=SCHEMA)


def letter_keys(store: ObjectStore, prefix: str = PREFIX) -> list[str]:
    with store_errors(store):
        return [k for k in store.list_keys(prefix) if k.endswith(".parquet")]


def night_prefix(night: str | None) -> str:
    """The dead letters of one night (the night they were written, YYYYMMDD), or all of them."""
    if night is None:
        return PREFIX
    if not re.fullmatch(r"\d{8}", night):
        raise InvalidArgument(f"night {night!r}: expected YYYYMMDD")
    return f"{PREFIX}night={night}/"


@dataclass(frozen=True)
class LetterGroup:
    """Dead letters of one night, from one topic (or replay path), failing for one reason."""

    night: str
    topic: str
    reason: str
    count: int


def summary(store: ObjectStore, prefix: str = PREFIX) -> list[LetterGroup]:
    """Dead letters by night written, topic and :func:`reason`, most numerous first within a night.
    The survey of a letter is unknown: it is the packet that could not be read."""
    counts: Counter = Counter()
    with store_errors(store):
        for key in letter_keys(store, prefix):
            found = _NIGHT.search(key)
            night = found[1] if found else "?"
            table = store.read_table(key, columns=["topic", "error"])
            for topic, error in zip(table.column("topic").to_pylist(), table.column("error").to_pylist()):
                counts[(night, topic or "?", reason(error))] += 1
    return [LetterGroup(night, topic, why, n)
            for (night, topic, why), n in sorted(counts.items(), key=lambda kv: (kv[0][0], -kv[1], kv[0][1:]))]


def packet_of(letter: dict, kafka: KafkaSettings, schema: bytes | None) -> Packet:
    """The message a dead letter was, rebuilt as its source built it (a Kafka message from its key and headers)."""
    headers = [(h["key"], h["value"]) for h in letter["headers"]] if letter["headers"] is not None else None
    if (letter["source"] or "").startswith(KAFKA_SOURCE_PREFIX):
        return kafka_packet(kafka, schema, letter["topic"], letter["partition"], letter["offset"], letter["key"],
                            letter["raw"], headers)
    return Packet(letter["raw"], topic=letter["topic"], partition=letter["partition"], offset=letter["offset"],
                  source=letter["source"], key=letter["key"], headers=headers)


class DeadLetterSource:
    """The dead-letter files under a prefix as a poll source: each letter is a message; :meth:`commit` removes
    the letters the poll took (a file given back in part keeps the rest). A letter repeated in the files (the
    same bytes from the same place: a replay that died after writing its new letters and before its commit) is
    taken once."""

    def __init__(self, store: ObjectStore, prefix: str, kafka: KafkaSettings):
        if not prefix.startswith(PREFIX) or ".." in prefix.split("/"):
            raise InvalidArgument(f"dead-letter path {SCHEME}{prefix.removeprefix('dlq/')!r}: expected "
                                  f"{SCHEME}{PREFIX.removeprefix('dlq/')}[night=YYYYMMDD/]")
        self.store, self.prefix, self.kafka = store, prefix, kafka
        self.where = SCHEME + prefix.removeprefix("dlq/")
        self._schema = writer_schema(kafka)
        self._fetched: dict[str, pa.Table] = {}  # file -> its letters, for this poll
        self._given_back: dict[str, set[int]] = {}  # file -> rows released by the poll
        self._origin: dict[int, tuple[str, int]] = {}  # id(packet) -> (file, row)

    def fetch(self, max_alerts: int, timeout_s: float) -> list[Packet]:
        """Whole files, in key order, until ``max_alerts`` letters (the poll gives back what lies past its bound)."""
        self._fetched, self._given_back, self._origin = {}, {}, {}
        packets, seen, n = [], set(), 0
        with store_errors(self.store, reading=f"dead letters {self.where}"):
            for key in letter_keys(self.store, self.prefix):
                if n >= max_alerts:
                    break
                table = read_letters(self.store, key)
                self._fetched[key] = table
                for row, letter in enumerate(table.to_pylist()):
                    where = (letter["raw"], letter["topic"], letter["partition"], letter["offset"], letter["source"])
                    if where in seen:
                        continue
                    seen.add(where)
                    packet = packet_of(letter, self.kafka, self._schema)
                    self._origin[id(packet)] = (key, row)
                    packets.append(packet)
                    n += records_in(letter["raw"])
        return packets

    def release(self, packets: list[Packet]) -> None:
        for packet in packets:
            key, row = self._origin[id(packet)]
            self._given_back.setdefault(key, set()).add(row)

    def commit(self) -> None:
        """Remove the letters taken: called by the poll once its alerts and its own new dead letters are durable."""
        for key, table in self._fetched.items():
            kept = sorted(self._given_back.get(key, ()))
            if kept:
                self.store.write_table(key, table.take(pa.array(kept, pa.int64())))
            else:
                self.store.delete(key)
        self._fetched, self._given_back, self._origin = {}, {}, {}

