"""The ingest stage: fetch a bounded batch of packets, decode and clean them, filter, deduplicate, write parquet,
and only then commit the source's offsets.

The bound is on alerts, not messages: a message (a Kafka message, a replayed file) can be an Avro container of
many alerts, and the poll stops at the message that reaches ``max_alerts``, taken whole (offsets are per message,
so splitting one would lose or repeat alerts). A poll writes one alerts file per survey and observing night of its
alerts (:func:`observing_night`), so a backfill of 2019 alerts lands under ``night=2019...``, not today's night.

Delivery is at least once with deduplication, which makes each alert land exactly once in ``alerts/``:
- every file is written atomically (a reader never sees half of one), the alerts file first;
- offsets (Kafka) or the replay cursor are committed only after every file of the poll is durable, so a
  crash anywhere before re-delivers the whole poll;
- a re-delivered alert is dropped because its candid is already in an alerts file of its own night (where it
  was written, whenever that was) or of the last ``dedup_days`` nights. The candids of each alerts file are
  cached in ``state/ingest/candids/`` beside it; a cache entry missing after a crash is rebuilt from the alerts
  file itself, which stays the source of truth.
A store that cannot be reached fails the poll with :class:`~skysift.errors.Unavailable` and commits nothing.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from skysift import config
from skysift.alerts import filters, surveys
from skysift.alerts.decode import decode
from skysift.alerts.schema import conform
from skysift.backlog import Behind, Champion, find_behind, list_scored, list_stages
from skysift.config import Settings
from skysift.ingest import deadletters
from skysift.ingest.kafka import KafkaSource
from skysift.ingest.replay import StoredBatch, open_replay, records_in
from skysift.ingest.settings import IngestSettings, KafkaSettings
from skysift.store.base import ObjectStore, store_errors
from skysift.store.keys import Batch, BatchKey, new_batch, parse_batch

log = logging.getLogger(__name__)

INDEX_PREFIX = "state/ingest/candids/"


JD_UNIX_EPOCH = 2440587.5


def observing_night(jd: np.ndarray, survey: str, fallback: datetime) -> np.ndarray:
    """The night (YYYYMMDD) each alert was observed on, by the survey's rule (the hours its night names are
    shifted from UTC); ``fallback``'s UTC date where jd is missing."""
    shift = surveys.get(survey).night_shift_hours
    jd = np.asarray(jd, dtype=np.float64)
    known = np.isfinite(jd)
    hours = np.floor(np.where(known, (jd - JD_UNIX_EPOCH) * 24.0 + shift, 0.0))
    days = hours.astype(np.int64).astype("datetime64[h]").astype("datetime64[D]")
    nights = np.char.replace(days.astype(str), "-", "")
    return np.where(known, nights, fallback.astimezone(timezone.utc).strftime("%Y%m%d"))


@dataclass
class PollResult:
    alerts: list[Batch] = field(default_factory=list)
    cutouts: list[Batch] = field(default_factory=list)
    n_messages: int = 0
    n_alerts: int = 0  # rows of the alerts batches: written to alerts/, or passed on again by a store:// replay
    n_rejected: int = 0  # dropped by the filter
    n_duplicates: int = 0  # candids seen earlier in this poll, or in an alerts file of their night or a recent one
    n_dead_letters: int = 0
    dlq_key: str | None = None
    behind: list[Behind] = field(default_factory=list)  # earlier batches lacking a later stage (oldest first)
    n_behind: int = 0  # all such batches in the catch-up window, ``behind`` being the oldest of them


def parquet_bytes(table: pa.Table) -> bytes:
    """zstd, with dictionaries for text columns only: on ids and magnitudes a dictionary is tried, outgrows its
    page and is dropped, which made a poll's alerts file ~30 % slower to write and ~30 % larger (measured)."""
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd", use_dictionary=[f.name for f in table.schema if _is_text(f.type)])
    return sink.getvalue()


def _is_text(dtype: pa.DataType) -> bool:
    if pa.types.is_list(dtype) or pa.types.is_large_list(dtype):
        return _is_text(dtype.value_type)
    return pa.types.is_string(dtype) or pa.types.is_large_string(dtype)


class CandidIndex:
    """Candids already written to ``alerts/`` in the last few nights (for deduplication across polls).

    An alerts file never changes once written, so its candids are also kept in memory between polls (for
    the nights the last poll looked at): a poll reads only the index files written since, by whichever
    replica, instead of every file of the night again.
    """

    def __init__(self, store: ObjectStore):
        self.store = store
        self._known: dict[str, np.ndarray] = {}  # index key -> candids

    @staticmethod
    def key_for(alerts_key: str) -> str:
        return INDEX_PREFIX + alerts_key.removeprefix("alerts/")

    def add(self, alerts_key: str, candids: pa.Array | pa.ChunkedArray) -> None:
        self.store.put_bytes(self.key_for(alerts_key), parquet_bytes(pa.table({"candid": candids})))
        self._known[self.key_for(alerts_key)] = candids.to_numpy()

    def written(self, survey: str, nights) -> np.ndarray:
        """Candids in the alerts files of ``survey`` under these nights."""
        used: dict[str, np.ndarray] = {}
        for night in sorted(nights):
            prefix = f"alerts/survey={survey}/night={night}/"
            cached = set(self.store.list_keys(INDEX_PREFIX + prefix.removeprefix("alerts/")))
            for key in self.store.list_keys(prefix):
                if not key.endswith("_alerts.parquet"):
                    continue
                index_key = self.key_for(key)
                if index_key in cached and index_key in self._known:
                    used[index_key] = self._known[index_key]
                    continue
                if index_key in cached:
                    candids = self.store.read_table(index_key).column("candid")
                else:  # the poll that wrote it died before caching its candids: rebuild from the file
                    candids = self.store.read_table(key, columns=["candid"]).column("candid")
                    self.add(key, candids)
                used[index_key] = candids.to_numpy()
        mine = INDEX_PREFIX + f"survey={survey}/"  # forget this survey's nights that were not asked for
        self._known = {k: v for k, v in self._known.items() if not k.startswith(mine)} | used
        return np.concatenate([np.empty(0, dtype=np.int64), *used.values()])


    def batches_holding(self, survey: str, candids: np.ndarray) -> dict[str, np.ndarray]:
        """The alerts keys (of the nights :meth:`written` was last asked for) holding ``candids``, with theirs."""
        mine = INDEX_PREFIX + f"survey={survey}/"
        out = {}
        for index_key, known in self._known.items():
            hit = candids[np.isin(candids, known)] if index_key.startswith(mine) else candids[:0]
            if hit.size:
                out["alerts/" + index_key.removeprefix(INDEX_PREFIX)] = hit
        return out


def recent_nights(now: datetime, days: int) -> set[str]:
    return {(now - timedelta(days=d)).strftime("%Y%m%d") for d in range(days + 1)}


def fetch_alerts(source, max_alerts: int, timeout_s: float):
    """Packets up to the one that brings the alerts to ``max_alerts`` (taken whole); any fetched past it are
    given back to the source uncommitted, so the next poll starts with them."""
    packets = source.fetch(max_alerts, timeout_s)
    n = 0
    for i, packet in enumerate(packets):
        n += packet.batch.rows if isinstance(packet, StoredBatch) else records_in(packet.value)
        if n >= max_alerts and i + 1 < len(packets):
            source.release(packets[i + 1:])
            return packets[: i + 1]
    return packets


def take_alerts_tables(packets: list) -> tuple[dict[str, pa.Table], list]:
    """skysift's own alerts files (replayed from another store or a directory) are clean already: their rows are
    taken as they are, by survey; the other packets are left to the decoder. So is a file naming a survey skysift
    does not know: its rows could not be written (the survey is part of the key), which would fail every poll of
    the source on the same packet, where a dead letter lets the source move on."""
    tables: dict[str, list[pa.Table]] = {}
    rest = []
    for packet in packets:
        table = None
        if packet.value.startswith(b"PAR1"):
            try:
                pf = pq.ParquetFile(io.BytesIO(packet.value))
                if (pf.schema_arrow.metadata or {}).get(b"skysift.table") == b"alerts":
                    table = conform(pf.read(), surveys.alerts_schema())
            except (pa.ArrowException, ValueError, OSError):
                table = None  # the decoder makes it a dead letter, with its error
            if table is not None and not set(pc.unique(table.column("survey")).to_pylist()) <= set(surveys.names()):
                table = None
        if table is None:
            rest.append(packet)
            continue
        for survey in pc.unique(table.column("survey")).to_pylist():
            tables.setdefault(survey, []).append(table.filter(pc.equal(table.column("survey"), survey)))
    return {s: pa.concat_tables(t) for s, t in tables.items()}, rest


def first_occurrences(candids: np.ndarray) -> np.ndarray:
    """Sorted row indices keeping the first row of every candid."""
    _, first = np.unique(candids, return_index=True)
    return np.sort(first)


class IngestStage:
    def __init__(self, settings: Settings, store: ObjectStore, ingest: IngestSettings | None = None,
                 kafka: KafkaSettings | None = None):
        self.settings = settings
        self.store = store
        self.ingest = ingest or config.load(IngestSettings)
        self._kafka = kafka
        self._consumer = None  # kept across polls: joining the consumer group again each time costs seconds
        self._index = CandidIndex(store)  # kept across polls: it remembers the candids of the files it read

    def open_source(self, replay_path: str | None):
        """The dead letters for a ``dlq://`` path, the replay source when a path is given or configured, else the
        (long-lived) Kafka consumer."""
        if replay_path and replay_path.startswith(deadletters.SCHEME):
            return deadletters.DeadLetterSource(self.store, "dlq/" + replay_path.removeprefix(deadletters.SCHEME),
                                                self._kafka or config.load(KafkaSettings))
        if replay_path or self.ingest.source == "replay":
            return open_replay(replay_path or self.ingest.default_replay_path(), self.store, self.settings)
        if self._consumer is None:
            self._consumer = KafkaSource(self._kafka or config.load(KafkaSettings))
        return self._consumer

    def close(self) -> None:
        """Leave the consumer group now rather than when the session times out."""
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None

    def poll(self, max_alerts: int | None = None, timeout_s: float | None = None, replay_path: str | None = None,
             keep_cutouts: bool | None = None, filter_name: str | None = None,
             champions: Sequence[Champion] = ()) -> PollResult:
        """One bounded poll; ``champions`` (model name, version): the current champions, whose predictions every
        earlier batch should have (those lacking them are reported behind, to be re-scored)."""
        max_alerts = max_alerts or self.ingest.max_alerts
        timeout_s = timeout_s or self.ingest.timeout_s
        keep_cutouts = self.ingest.keep_cutouts if keep_cutouts is None else keep_cutouts
        selection = filters.get(filter_name or self.ingest.filter)
        with store_errors(self.store):  # before any fetch: a store that cannot be listed fails the poll early
            backlog = self.backlog(datetime.now(timezone.utc), champions)
        source = self.open_source(replay_path)
        failed = True
        try:
            packets = fetch_alerts(source, max_alerts, timeout_s)
            now = datetime.now(timezone.utc)
            stored = [p for p in packets if isinstance(p, StoredBatch)]  # filtered when they were first ingested
            tables, rest = take_alerts_tables([p for p in packets if not isinstance(p, StoredBatch)])
            decoded = decode(rest, keep_cutouts=keep_cutouts, now=now)
            for survey, table in tables.items():
                decoded.alerts[survey] = pa.concat_tables([t for t in (decoded.alerts.get(survey), table) if t is not None])
            result = PollResult(n_messages=len(packets), n_dead_letters=len(decoded.dead_letters), n_behind=backlog.total)
            passed_on = {packet.batch.key for packet in stored}  # a store:// replay runs these through every stage
            result.behind = [b for b in backlog.behind if b.alerts_key not in passed_on]
            for packet in stored:
                result.alerts.append(packet.batch)
                result.n_alerts += packet.batch.rows
            with store_errors(self.store):
                index, recent = self._index, recent_nights(now, self.ingest.dedup_days)
                for survey, table in sorted(decoded.alerts.items()):
                    if selection is not None:
                        table, rejected = selection.apply(table, survey)
                        result.n_rejected += rejected
                    nights = observing_night(table.column("jd").to_numpy(zero_copy_only=False), survey, now)
                    seen = index.written(survey, recent | set(nights.tolist()))
                    candids = table.column("candid").to_numpy()
                    keep = self._deduplicate(candids, seen, result)
                    if survey in decoded.cutouts:
                        self._stamps_for_stored(survey, np.setdiff1d(candids, candids[keep]), decoded.cutouts[survey],
                                                result)
                    for night in sorted(set(nights[keep].tolist())):  # one file per night, rows in arrival order
                        rows = keep[nights[keep] == night]  # sorted and unique: all of them is the table as is
                        part = table if rows.size == table.num_rows else table.take(rows)  # a take copies every list
                        self._write(survey, night, part, decoded.cutouts.get(survey), now, result)
                if decoded.dead_letters:
                    result.dlq_key = self._write_dlq(decoded, now)
                source.commit()
            failed = False
        finally:
            if failed and source is self._consumer:
                self.close()  # start the next poll from the committed offsets with a fresh consumer
        log.info("poll done", extra={k: v for k, v in vars(result).items() if k.startswith("n_")})
        return result

    def backlog(self, now: datetime, champions: Sequence[Champion] = ()):
        """Earlier alerts batches that lack a later stage's file or a champion's predictions (see
        :mod:`skysift.backlog`)."""
        listing, window = list_stages(self.store), timedelta(days=self.ingest.catchup_days)
        return find_behind(listing, now, window, timedelta(seconds=self.ingest.catchup_grace_s),
                           self.ingest.catchup_batches,
                           scored=list_scored(self.store, champions, listing["alerts"], now, window, prune=True))

    @staticmethod
    def _deduplicate(candids: np.ndarray, seen: np.ndarray, result: PollResult) -> np.ndarray:
        """Row indices to write: each candid's first row, unless it was written already."""
        keep = first_occurrences(candids)
        if seen.size:
            keep = keep[~np.isin(candids[keep], seen)]
        result.n_duplicates += candids.size - keep.size
        return keep

    def _write(self, survey: str, night: str, alerts: pa.Table, cutouts: pa.Table | None, now: datetime,
               result: PollResult) -> None:
        data = parquet_bytes(alerts)
        key = base = dataclasses.replace(new_batch("alerts", survey, now), night=night)
        while not self.store.put_if_absent(str(key), data):  # two polls in one second: make the stem unique
            key = BatchKey(base.stage, base.survey, base.night, f"{base.stem}_{uuid.uuid4().hex[:8]}")
        result.alerts.append(Batch(str(key), survey, alerts.num_rows))
        result.n_alerts += alerts.num_rows
        if cutouts is not None:
            cutouts = cutouts.filter(pc.is_in(cutouts.column("candid"), value_set=alerts.column("candid")))
            cutouts = cutouts.take(first_occurrences(cutouts.column("candid").to_numpy()))
            cut_key = str(key.sibling("cutouts"))
            self.store.write_table(cut_key, cutouts)
            result.cutouts.append(Batch(cut_key, survey, cutouts.num_rows))
        self._index.add(str(key), alerts.column("candid"))

    def _stamps_for_stored(self, survey: str, duplicates: np.ndarray, cutouts: pa.Table, result: PollResult) -> None:
        """Stamps of alerts stored by an earlier poll that kept none (a path replayed again with its cursor reset
        and stamps kept): written as the cutouts of their batch, if that batch has none yet."""
        for alerts_key, candids in self._index.batches_holding(survey, duplicates).items():
            rows = cutouts.filter(pc.is_in(cutouts.column("candid"), value_set=pa.array(candids)))
            rows = rows.take(first_occurrences(rows.column("candid").to_numpy()))
            cut_key = str(parse_batch(alerts_key, "alerts").sibling("cutouts"))
            if rows.num_rows and self.store.put_if_absent(cut_key, parquet_bytes(rows)):
                result.cutouts.append(Batch(cut_key, survey, rows.num_rows))

    def _write_dlq(self, decoded, now: datetime) -> str:
        key = deadletters.write_letters(self.store, decoded, now)
        log.warning("dead letters written", extra={"dlq_key": key, "n": len(decoded.dead_letters)})
        return key
