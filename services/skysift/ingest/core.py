"""The ingest stage: fetch a bounded batch of packets, decode and clean them, filter, deduplicate, write parquet,
and only then commit the source's offsets.

Delivery is at least once with deduplication, which makes each alert land exactly once in ``alerts/``:
- every file is written atomically (a reader never sees half of one), the alerts file first;
- offsets (Kafka) or the replay cursor are committed only after every file of the poll is durable, so a
  crash anywhere before re-delivers the whole poll;
- a re-delivered alert is dropped because its candid is already in a recent alerts file. The candids of each
  alerts file are cached in ``state/ingest/candids/`` beside it; a cache entry missing after a crash is rebuilt
  from the alerts file itself, which stays the source of truth.
A store that cannot be reached fails the poll with :class:`~skysift.errors.Unavailable` and commits nothing.
"""

from __future__ import annotations

import io
import logging
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from skysift import config
from skysift.config import Settings
from skysift.errors import SkysiftError, Unavailable
from skysift.ingest.settings import IngestSettings, KafkaSettings
from skysift.store.base import ObjectStore
from skysift.store.keys import Batch, BatchKey, dlq_key, new_batch

log = logging.getLogger(__name__)

INDEX_PREFIX = "state/ingest/candids/"
DLQ_SCHEMA = pa.schema([
    pa.field("raw", pa.binary()), pa.field("error", pa.string()), pa.field("topic", pa.string()),
    pa.field("partition", pa.int32()), pa.field("offset", pa.int64()), pa.field("source", pa.string()),
    pa.field("ingest_time", pa.timestamp("ms", tz="UTC")),
])


@dataclass
class PollResult:
    alerts: list[Batch] = field(default_factory=list)
    cutouts: list[Batch] = field(default_factory=list)
    n_messages: int = 0
    n_alerts: int = 0  # rows written to alerts/
    n_rejected: int = 0  # dropped by the filter
    n_duplicates: int = 0  # candids seen earlier in this poll or in a recent one
    n_dead_letters: int = 0
    dlq_key: str | None = None


@contextmanager
def store_errors(store: ObjectStore):
    """Any failure to reach the store is :class:`Unavailable` (the poll exits non-zero; the CronJob retries)."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except SkysiftError:
        raise
    except (OSError, BotoCoreError, ClientError) as exc:
        raise Unavailable(f"object store {store.url} unavailable: {type(exc).__name__}: {exc}") from None


def parquet_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()


class CandidIndex:
    """Candids already written to ``alerts/`` in the last few nights (for deduplication across polls)."""

    def __init__(self, store: ObjectStore):
        self.store = store

    @staticmethod
    def key_for(alerts_key: str) -> str:
        return INDEX_PREFIX + alerts_key.removeprefix("alerts/")

    def add(self, alerts_key: str, candids: pa.Array) -> None:
        self.store.put_bytes(self.key_for(alerts_key), parquet_bytes(pa.table({"candid": candids})))

    def recent(self, surveys, now: datetime, days: int) -> np.ndarray:
        nights = sorted({(now - timedelta(days=d)).strftime("%Y%m%d") for d in range(days + 1)})
        parts = [np.empty(0, dtype=np.int64)]
        for survey in surveys:
            for night in nights:
                prefix = f"alerts/survey={survey}/night={night}/"
                cached = set(self.store.list_keys(INDEX_PREFIX + prefix.removeprefix("alerts/")))
                for key in self.store.list_keys(prefix):
                    if not key.endswith("_alerts.parquet"):
                        continue
                    index_key = self.key_for(key)
                    if index_key in cached:
                        candids = self.store.read_table(index_key).column("candid")
                    else:  # the poll that wrote it died before caching its candids: rebuild from the file
                        candids = self.store.read_table(key, columns=["candid"]).column("candid")
                        self.add(key, candids)
                    parts.append(candids.to_numpy())
        return np.concatenate(parts)


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

    def open_source(self, replay_path: str | None):
        """The replay source when a path is given or configured, else the (long-lived) Kafka consumer."""
        from skysift.ingest.replay import ReplaySource

        if replay_path or self.ingest.source == "replay":
            return ReplaySource(replay_path or self.ingest.default_replay_path(), self.store)
        if self._consumer is None:
            from skysift.ingest.kafka import KafkaSource

            self._consumer = KafkaSource(self._kafka or config.load(KafkaSettings))
        return self._consumer

    def close(self) -> None:
        """Leave the consumer group now rather than when the session times out."""
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None

    def poll(self, max_alerts: int | None = None, timeout_s: float | None = None, replay_path: str | None = None,
             keep_cutouts: bool | None = None, filter_name: str | None = None) -> PollResult:
        from skysift.alerts import filters
        from skysift.alerts.decode import SURVEYS, decode

        max_alerts = max_alerts or self.ingest.max_alerts
        timeout_s = timeout_s or self.ingest.timeout_s
        keep_cutouts = self.ingest.keep_cutouts if keep_cutouts is None else keep_cutouts
        selection = filters.get(filter_name or self.ingest.filter)
        source = self.open_source(replay_path)
        failed = True
        try:
            packets = source.fetch(max_alerts, timeout_s)
            now = datetime.now(timezone.utc)
            decoded = decode(packets, keep_cutouts=keep_cutouts, now=now)
            result = PollResult(n_messages=len(packets), n_dead_letters=len(decoded.dead_letters))
            with store_errors(self.store):
                seen = CandidIndex(self.store).recent(SURVEYS, now, self.ingest.dedup_days) if packets else None
                for survey, table in sorted(decoded.alerts.items()):
                    if selection is not None:
                        table, rejected = selection.apply(table, survey)
                        result.n_rejected += rejected
                    kept = self._deduplicate(table, seen, result)
                    if kept.num_rows:
                        self._write(survey, kept, decoded.cutouts.get(survey), now, result)
                if decoded.dead_letters:
                    result.dlq_key = self._write_dlq(decoded, now)
                source.commit()
            failed = False
        finally:
            if failed and source is self._consumer:
                self.close()  # start the next poll from the committed offsets with a fresh consumer
        log.info("poll done", extra={k: v for k, v in vars(result).items() if k.startswith("n_")})
        return result

    def _deduplicate(self, table: pa.Table, seen: np.ndarray | None, result: PollResult) -> pa.Table:
        candids = table.column("candid").to_numpy()
        keep = first_occurrences(candids)
        if seen is not None and seen.size:
            keep = keep[~np.isin(candids[keep], seen)]
        result.n_duplicates += table.num_rows - keep.size
        return table.take(keep) if keep.size != table.num_rows else table

    def _write(self, survey: str, alerts: pa.Table, cutouts: pa.Table | None, now: datetime,
               result: PollResult) -> None:
        data = parquet_bytes(alerts)
        key = base = new_batch("alerts", survey, now)
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
        CandidIndex(self.store).add(str(key), alerts.column("candid"))

    def _write_dlq(self, decoded, now: datetime) -> str:
        packets = decoded.dead_packets
        table = pa.table({
            "raw": [raw for raw, _ in decoded.dead_letters],
            "error": [err for _, err in decoded.dead_letters],
            "topic": [p.topic for p in packets],
            "partition": [p.partition for p in packets],
            "offset": [p.offset for p in packets],
            "source": [p.source for p in packets],
            "ingest_time": [now] * len(packets),
        }, schema=DLQ_SCHEMA)
        key = dlq_key("ingest", now)
        self.store.write_table(key, table)
        log.warning("dead letters written", extra={"dlq_key": key, "n": table.num_rows})
        return key
