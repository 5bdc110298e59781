"""Kafka source: consume a bounded batch of messages, then commit their offsets only when told to.

The consumer never auto-commits: :meth:`KafkaSource.commit` is called by the ingest stage after the poll's
parquet files are durable, so a crash before that re-delivers every message of the poll (at least once;
the stage deduplicates by candid). Fink puts the writer schema (JSON) in the message key: it is passed on
with the value and the decoder caches it by its bytes.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from skysift.alerts.decode import Packet
from skysift.errors import FailedPrecondition, Unavailable
from skysift.ingest.settings import KafkaSettings

log = logging.getLogger(__name__)

LIST_TIMEOUT_S = 10.0
POLL_STEP_S = 0.5


class KafkaSource:
    """One consumer in the configured group, subscribed to the configured topics."""

    def __init__(self, settings: KafkaSettings):
        from confluent_kafka import Consumer

        self.settings = settings
        self.schema = Path(settings.schema_path).read_bytes() if settings.schema_path else None
        self._fatal: list[str] = []
        conf = settings.consumer_config()
        conf.update({"error_cb": self._on_error, "session.timeout.ms": settings.session_timeout_ms})
        self.consumer = Consumer(conf)
        self._subscribed = False
        self._assigned: set[tuple[str, int]] = set()
        self._at_end: set[tuple[str, int]] = set()
        self._next: dict[tuple[str, int], int] = {}  # offset to commit per partition: last fetched + 1

    @property
    def where(self) -> str:
        return f"Kafka {self.settings.bootstrap_servers} topics {','.join(self.settings.topics)}"

    def _on_error(self, err) -> None:
        if err.fatal() or err.name() in ("_ALL_BROKERS_DOWN", "_AUTHENTICATION"):
            self._fatal.append(str(err))
        log.warning("kafka error: %s", err)

    def _on_assign(self, consumer, partitions) -> None:
        self._assigned.update((p.topic, p.partition) for p in partitions)

    def _on_revoke(self, consumer, partitions) -> None:
        for p in partitions:
            self._assigned.discard((p.topic, p.partition))
            self._at_end.discard((p.topic, p.partition))

    def _check_topics(self, timeout_s: float) -> None:
        from confluent_kafka import KafkaException

        try:
            metadata = self.consumer.list_topics(timeout=min(LIST_TIMEOUT_S, timeout_s))
        except KafkaException as exc:
            raise Unavailable(f"Kafka broker unreachable at {self.settings.bootstrap_servers}: {exc}") from None
        missing = [t for t in self.settings.topics if t not in metadata.topics]
        if missing:
            raise FailedPrecondition(f"Kafka topics not found on {self.settings.bootstrap_servers}: {', '.join(missing)}")

    def fetch(self, max_messages: int, timeout_s: float) -> list[Packet]:
        """Up to ``max_messages`` messages within ``timeout_s`` (sooner when every partition is drained)."""
        deadline = time.monotonic() + timeout_s
        self._check_topics(timeout_s)
        if not self._subscribed:
            self.consumer.subscribe(self.settings.topics, on_assign=self._on_assign, on_revoke=self._on_revoke)
            self._subscribed = True
        packets: list[Packet] = []
        while len(packets) < max_messages and time.monotonic() < deadline:
            if self._fatal:
                raise Unavailable(f"Kafka consumer failed ({self.where}): {self._fatal[-1]}")
            step = min(POLL_STEP_S, max(deadline - time.monotonic(), 0.01))
            want = min(self.settings.batch_size, max_messages - len(packets))
            for msg in self.consumer.consume(num_messages=want, timeout=step):
                self._take(msg, packets)
            if self.settings.stop_at_end and self._assigned and self._assigned <= self._at_end:
                break
        return packets

    def _take(self, msg, packets: list[Packet]) -> None:
        from confluent_kafka import KafkaError

        where = (msg.topic(), msg.partition())
        err = msg.error()
        if err is not None:
            if err.code() == KafkaError._PARTITION_EOF:
                self._at_end.add(where)
            elif err.fatal():
                raise Unavailable(f"Kafka consumer failed ({self.where}): {err}")
            else:
                log.warning("kafka message error on %s[%s]: %s", *where, err)
            return
        self._at_end.discard(where)
        key = msg.key()
        schema = key if key and key.lstrip()[:1] in (b"{", b"[") else self.schema  # Fink: schema JSON as key
        packets.append(Packet(msg.value() or b"", schema=schema, format=self.settings.topic_format(msg.topic()),
                              topic=msg.topic(), partition=msg.partition(), offset=msg.offset(),
                              source=f"kafka:{msg.topic()}"))
        self._next[where] = max(self._next.get(where, 0), msg.offset() + 1)

    def commit(self) -> None:
        """Commit what :meth:`fetch` returned (synchronously): call only once the poll's output is durable."""
        from confluent_kafka import KafkaException, TopicPartition

        if not self._next:
            return
        offsets = [TopicPartition(t, p, o) for (t, p), o in sorted(self._next.items())]
        try:
            self.consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            raise Unavailable(f"Kafka offset commit failed ({self.where}): {exc}") from None
        self._next.clear()

    def close(self) -> None:
        self.consumer.close()

    def release(self, packets: list[Packet]) -> None:
        """Give back messages :meth:`fetch` returned that the poll does not keep (past its alert bound): each of their
        partitions is rewound to the first of them, so :meth:`commit` stops there and the next fetch returns them."""
        from confluent_kafka import KafkaException, TopicPartition

        first: dict[tuple[str, int], int] = {}
        for p in packets:
            where = (p.topic, p.partition)
            first[where] = min(first.get(where, p.offset), p.offset)
        for where, offset in first.items():
            self._next[where] = offset
            self._at_end.discard(where)
            try:
                self.consumer.seek(TopicPartition(*where, offset))
            except KafkaException as exc:  # revoked meanwhile: its next owner starts from the committed offset
                log.warning("kafka seek back on %s[%s] failed: %s", *where, exc)
