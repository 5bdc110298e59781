"""Kafka source: consume a bounded batch of messages, then commit their offsets only when told to.

The consumer never auto-commits: :meth:`KafkaSource.commit` is called by the ingest stage after the poll's
parquet files are durable, so a crash before that re-delivers every message of the poll (at least once;
the stage deduplicates by candid). Fink puts the writer schema (JSON) in the message key: it is passed on
with the value and the decoder caches it by its bytes.

A poll ends early (``stop_at_end``) only when the consumer's partitions are drained *and* it can tell that no
other partition is left behind: it holds every partition of its topics, or it has held its share for longer
than a dead member could keep the rest (a session timeout and two heartbeats: by then the coordinator has
evicted such a member and the group has rebalanced its partitions to the live ones). Without the second
condition, a consumer given a partial assignment right after an ingest was killed (Tansu hands a killed
member's partitions out on the next join, until its session expires) reported "drained" and stopped, leaving
the dead member's partitions unconsumed; see docs/guarantees.md.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from skysift.alerts.decode import Packet
from skysift.errors import FailedPrecondition, Unavailable
from skysift.ingest.settings import KafkaSettings, unreachable

log = logging.getLogger(__name__)

LIST_TIMEOUT_S = 10.0
POLL_STEP_S = 0.5
HEARTBEAT_MS = 3000  # librdkafka's default, lowered to a third of a shorter session timeout


def key_schema(key: bytes | None, value: bytes) -> bytes | None:
    """The writer schema a Kafka key carries (Fink puts its schema JSON there), or None.

    A value in Confluent wire format whose schema id is one skysift has (Rubin's) is decoded by that id, whatever
    its key: a key that merely starts with '{' (a JSON key on a Rubin topic) is not a schema.
    """
    from skysift.alerts import surveys
    from skysift.alerts.decode import CONFLUENT_MAGIC

    if not key or key.lstrip()[:1] not in (b"{", b"["):
        return None
    if len(value) > 5 and value[:1] == CONFLUENT_MAGIC:
        try:
            surveys.wire_schema(int.from_bytes(value[1:5], "big"))
            return None
        except KeyError:
            pass  # not an id we know: the key's schema is the better guess
    return key


KAFKA_SOURCE_PREFIX = "kafka:"  # a packet's ``source`` when it came from a Kafka topic


def writer_schema(settings: KafkaSettings) -> bytes | None:
    """SKYSIFT_KAFKA_SCHEMA_PATH's schema: the writer schema of schemaless topics whose keys carry none."""
    return Path(settings.schema_path).read_bytes() if settings.schema_path else None


def kafka_packet(settings: KafkaSettings, schema: bytes | None, topic: str, partition: int, offset: int,
                 key: bytes | None, value: bytes, headers: list[tuple[str, bytes]] | None) -> Packet:
    """A Kafka message as the decoder takes it, by the settings' format and schema rules (also used to rebuild a
    dead letter's message after a fix)."""
    return Packet(value, schema=key_schema(key, value) or schema, format=settings.topic_format(topic), topic=topic,
                  partition=partition, offset=offset, source=KAFKA_SOURCE_PREFIX + topic, key=key, headers=headers)


class KafkaSource:
    """One consumer in the configured group, subscribed to the configured topics."""

    def __init__(self, settings: KafkaSettings):
        from confluent_kafka import Consumer

        self.settings = settings
        self.schema = writer_schema(settings)
        self._fatal: list[str] = []
        self._last_error = ""  # librdkafka's latest reported error, e.g. "Connect to ipv4#127.0.0.1:9092 failed: ..."
        conf = settings.consumer_config()
        heartbeat_ms = min(HEARTBEAT_MS, settings.session_timeout_ms // 3)
        conf.update({"error_cb": self._on_error, "session.timeout.ms": settings.session_timeout_ms,
                     "heartbeat.interval.ms": heartbeat_ms})
        self.consumer = Consumer(conf)
        self._subscribed = False
        # A partial assignment held this long is all this consumer gets: a member that died holding the other
        # partitions has been evicted by then (session timeout), and our next heartbeat would have rebalanced.
        self._settle_s = (settings.session_timeout_ms + 2 * heartbeat_ms) / 1000
        self._partitions: set[tuple[str, int]] = set()  # every partition of the subscribed topics
        self._assigned: set[tuple[str, int]] = set()
        self._assigned_at = 0.0  # monotonic time of the last assignment change
        self._at_end: set[tuple[str, int]] = set()
        self._next: dict[tuple[str, int], int] = {}  # offset to commit per partition: last fetched + 1

    @property
    def where(self) -> str:
        return f"Kafka {self.settings.bootstrap_servers} topics {','.join(self.settings.topics)}"

    def _on_error(self, err) -> None:
        """Recorded, logged at DEBUG: librdkafka calls this at every failed connect, and the poll says the failure
        once (fatal ones fail the fetch, the latest reason is named when the broker cannot be reached)."""
        if err.fatal() or err.name() in ("_ALL_BROKERS_DOWN", "_AUTHENTICATION"):
            self._fatal.append(str(err))
        self._last_error = err.str()
        log.debug("kafka error: %s", err)

    @property
    def assignment(self) -> list[tuple[str, int]]:
        """The (topic, partition) pairs the group gives this consumer now, sorted."""
        return sorted(self._assigned)

    def _on_assign(self, consumer, partitions) -> None:
        self._assigned.update((p.topic, p.partition) for p in partitions)
        self._assignment_changed()

    def _on_revoke(self, consumer, partitions) -> None:
        for p in partitions:
            self._assigned.discard((p.topic, p.partition))
            self._at_end.discard((p.topic, p.partition))
        self._assignment_changed()

    def _assignment_changed(self) -> None:
        """Logged at INFO: with several replicas in the group, which one reads which partition is the first thing
        to check when one of them lags or idles (more replicas than partitions leaves some with none)."""
        self._assigned_at = time.monotonic()
        log.info("kafka partitions held", extra={"group": self.settings.group_id,
                                                 "partitions": [f"{t}[{p}]" for t, p in self.assignment]})

    def _check_topics(self, timeout_s: float) -> None:
        from confluent_kafka import KafkaException

        try:
            metadata = self.consumer.list_topics(timeout=min(LIST_TIMEOUT_S, timeout_s))
        except KafkaException as exc:
            if not self._subscribed:  # serves the error callback (the connect's reason); no message can come yet
                self.consumer.poll(0)
            raise Unavailable(unreachable(self.settings.bootstrap_servers, self._last_error or exc.args[0].str())
                              ) from None
        missing = [t for t in self.settings.topics if t not in metadata.topics]
        if missing:
            raise FailedPrecondition(f"Kafka topics not found on {self.settings.bootstrap_servers}: {', '.join(missing)}")
        self._partitions = {(t, p) for t in self.settings.topics for p in metadata.topics[t].partitions}

    def fetch(self, max_messages: int, timeout_s: float) -> list[Packet]:
        """Up to ``max_messages`` messages within ``timeout_s`` (sooner once drained, see :meth:`_drained`)."""
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
            if self.settings.stop_at_end and self._drained():
                break
        return packets

    def _drained(self) -> bool:
        """Every partition this consumer holds is at its end, and no other partition can be waiting for it."""
        if not self._assigned or not self._assigned <= self._at_end:
            return False
        return self._assigned >= self._partitions or time.monotonic() - self._assigned_at >= self._settle_s

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
        key, value = msg.key(), msg.value() or b""
        packets.append(kafka_packet(self.settings, self.schema, msg.topic(), msg.partition(), msg.offset(), key, value,
                                    [(k, v or b"") for k, v in msg.headers() or []]))
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
            if not self._subscribed:  # serves the error callback (the connect's reason); no message can come yet
                self.consumer.poll(0)
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
