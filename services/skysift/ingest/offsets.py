"""The consumer group's position on its topics: committed offset, high watermark and lag per partition, and a
reset of the committed offsets (to replay a topic, or to skip a backlog).

A reset is refused while the group has live members: a running consumer would overwrite the reset with its next
commit. Stop the pollers first. The members are counted as the broker describes the group; a group with none listed
is reset, and the broker has the last word: it refuses offset changes while the group still has a member (Kafka,
and Tansu, which lists no members even for a live consumer and keeps one that died without leaving until the next
member joins). That refusal is reported as the group being active, not as a broker failure.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

from skysift.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from skysift.ingest.settings import KafkaSettings, unreachable

TIMEOUT_S = 10.0
# What a broker answers to an offset change while the group still has a member (by error name)
MEMBER_ERRORS = ("UNKNOWN_MEMBER_ID", "GROUP_SUBSCRIBED_TO_TOPIC", "REBALANCE_IN_PROGRESS", "ILLEGAL_GENERATION",
                 "NON_EMPTY_GROUP")


@dataclass(frozen=True)
class PartitionOffsets:
    topic: str
    partition: int
    committed: int | None  # None: the group never committed on this partition
    low: int
    high: int  # high watermark: the offset the next produced message gets

    @property
    def lag(self) -> int:
        """Messages the group has still to read; with no commit, what ``auto.offset.reset`` would make it read."""
        return self.high - (self.committed if self.committed is not None else self.low)


@contextmanager
def _consumer(settings: KafkaSettings, what: str):
    """A consumer of the group that never subscribes (it only reads offsets); broker errors are Unavailable, and so
    is an admin request that gets no answer in time (its future raises a bare TimeoutError)."""
    from confluent_kafka import Consumer, KafkaError, KafkaException

    consumer = Consumer({**settings.consumer_config(), "enable.partition.eof": False})
    try:
        yield consumer
    except KafkaException as exc:
        error = exc.args[0]
        if error.code() == KafkaError._TRANSPORT:
            raise Unavailable(f"{what} failed: {unreachable(settings.bootstrap_servers, error.str())}") from None
        raise Unavailable(f"{what} failed on Kafka {settings.bootstrap_servers}: {exc}") from None
    except TimeoutError:
        raise Unavailable(f"{what} failed: Kafka {settings.bootstrap_servers} did not answer within {TIMEOUT_S:g}s"
                          ) from None
    finally:
        consumer.close()


def _admin(settings: KafkaSettings):
    from confluent_kafka.admin import AdminClient

    return AdminClient({k: v for k, v in settings.consumer_config().items()
                        if k == "logger" or k.startswith(("bootstrap.", "security.", "sasl.", "ssl."))})


def _partitions(consumer, settings: KafkaSettings, topics: list[str]):
    from confluent_kafka import TopicPartition

    metadata = consumer.list_topics(timeout=TIMEOUT_S)
    missing = [t for t in topics if t not in metadata.topics]
    if missing:
        raise NotFound(f"Kafka topics not found on {settings.bootstrap_servers}: {', '.join(missing)}")
    return [TopicPartition(t, p) for t in topics for p in sorted(metadata.topics[t].partitions)]


def _offsets(consumer, settings: KafkaSettings, topics: list[str]) -> list[PartitionOffsets]:
    parts = _partitions(consumer, settings, topics)
    committed = consumer.committed(parts, timeout=TIMEOUT_S)
    out = []
    for tp in committed:
        low, high = consumer.get_watermark_offsets(tp, timeout=TIMEOUT_S, cached=False)
        out.append(PartitionOffsets(tp.topic, tp.partition, tp.offset if tp.offset >= 0 else None, low, high))
    return out


def _topics(settings: KafkaSettings, topic: str | None) -> list[str]:
    if topic and topic not in settings.topics:
        raise InvalidArgument(f"topic {topic!r} is not one of the configured SKYSIFT_KAFKA_TOPICS "
                              f"({', '.join(settings.topics)})")
    return [topic] if topic else list(settings.topics)


def group_offsets(settings: KafkaSettings, topic: str | None = None) -> list[PartitionOffsets]:
    """Committed offset, watermarks and lag of the configured group on each partition of its topics."""
    topics = _topics(settings, topic)
    with _consumer(settings, "reading offsets") as consumer:
        return _offsets(consumer, settings, topics)


def group_state(admin, group: str) -> tuple[str, int]:
    """(state, number of members) of a consumer group, as the broker describes it."""
    (future,) = admin.describe_consumer_groups([group], request_timeout=TIMEOUT_S).values()
    description = future.result(timeout=TIMEOUT_S)
    return description.state.name, len(description.members)


def parse_target(to: str) -> str | int:
    """``earliest``, ``latest`` or an offset >= 0."""
    if to in ("earliest", "latest"):
        return to
    try:
        offset = int(to)
    except ValueError:
        offset = -1
    if offset < 0:
        raise InvalidArgument(f"--to {to!r}: expected earliest, latest or an offset >= 0")
    return offset


def reset_offsets(settings: KafkaSettings, to: str, topic: str | None = None) -> list[PartitionOffsets]:
    """Set the group's committed offset on every partition of ``topic`` (default: every configured topic) to the
    earliest or latest offset, or to a given offset (clamped to what the partition holds, as Kafka's own
    kafka-consumer-groups tool does). Returns the partitions as they are after the reset."""
    from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition

    target = parse_target(to)
    topics = _topics(settings, topic)
    admin = _admin(settings)
    with _consumer(settings, "resetting offsets") as consumer:
        state, members = group_state(admin, settings.group_id)
        if members:
            raise _active(settings, f"state {state}, {members} live members")
        wanted = [TopicPartition(p.topic, p.partition, p.low if target == "earliest" else p.high if target == "latest"
                                 else min(max(target, p.low), p.high)) for p in _offsets(consumer, settings, topics)]
        request = [ConsumerGroupTopicPartitions(settings.group_id, wanted)]
        for future in admin.alter_consumer_group_offsets(request, request_timeout=TIMEOUT_S).values():
            errors = _errors(future)
            if any(error.name() in MEMBER_ERRORS for error in errors):
                raise _active(settings, f"state {state}, no member listed, and the broker refused the reset: "
                                        f"{errors[0].str()}")
            if errors:
                raise Unavailable(f"resetting offsets failed on Kafka {settings.bootstrap_servers}: "
                                  f"{'; '.join(e.str() for e in errors)}")
        return _offsets(consumer, settings, topics)


def _errors(future) -> list:
    """The errors of an offset change: its partitions', or the one error of a refusal of the whole request."""
    from confluent_kafka import KafkaError, KafkaException

    try:
        return [tp.error for tp in future.result().topic_partitions if tp.error]
    except KafkaException as exc:
        if exc.args and isinstance(exc.args[0], KafkaError):
            return [exc.args[0]]
        raise


def _active(settings: KafkaSettings, why: str) -> FailedPrecondition:
    return FailedPrecondition(
        f"consumer group {settings.group_id!r} is active ({why}): stop every poller of this group (skysift poll "
        f"--every, the ingest service) and retry once the group is empty. A consumer that died without leaving is "
        f"dropped after SKYSIFT_KAFKA_SESSION_TIMEOUT_MS on Kafka; Tansu keeps it until another member joins: one "
        f"`skysift poll --in-process --max-alerts 1` joins, evicts it and leaves")
