"""Against a real Kafka-protocol broker (Tansu): `--max-alerts` bounds alerts in multi-alert containers without losing
any, and `skysift kafka offsets|reset` report and move the ingest group's offsets.

Messages are produced one per batch: Tansu reports a partition's high watermark as the last batch's base offset
+ 1, which is below the real end when a batch holds several records (real Kafka counts every record)."""

from __future__ import annotations

import io
import uuid

import fastavro
import pytest
from typer.testing import CliRunner

from skysift.cli import app
from skysift.errors import FailedPrecondition
from skysift.ingest import offsets
from skysift.ingest.core import IngestStage
from skysift.ingest.settings import IngestSettings, KafkaSettings
from tests import alert_packets as ap
from tests.integration.test_ingest_kafka import candids, make_topics

MULTI = ap.DATA / "ztf" / "fink_labeled" / "avro_more"


def produce(bootstrap: str, topic: str, values: list[tuple[bytes, bytes | None]], partitions: int = 1) -> None:
    from confluent_kafka import Producer

    failed = []
    producer = Producer({"bootstrap.servers": bootstrap, "message.max.bytes": 8 << 20, "batch.num.messages": 1})
    for i, (value, key) in enumerate(values):
        producer.produce(topic, value=value, key=key, partition=i % partitions,
                         on_delivery=lambda err, msg: err and failed.append(err))
        producer.flush(30)
    assert failed == []


def container(schema: dict, records: list[dict]) -> bytes:
    """A multi-alert Avro container of real records, as ZTF's archive files are."""
    buf = io.BytesIO()
    fastavro.writer(buf, fastavro.parse_schema(schema), records)
    return buf.getvalue()


def kafka_settings(bootstrap: str, topic: str) -> KafkaSettings:
    return KafkaSettings(bootstrap_servers=bootstrap, topics=[topic], group_id=f"g-{uuid.uuid4().hex[:8]}",
                         session_timeout_ms=6000)


def stage(settings, store, kafka: KafkaSettings) -> IngestStage:
    return IngestStage(settings, store, IngestSettings(source="kafka", timeout_s=30), kafka=kafka)


def test_max_alerts_finishes_the_crossing_container_and_the_rest_comes_next_poll(kafka, local_settings, local_store):
    bs = kafka.env["bootstrap.servers"]
    topic = f"multi-{uuid.uuid4().hex[:6]}"
    make_topics(bs, topic, partitions=1)
    real = (MULTI / "fink-client_avro_multi_alerts.avro").read_bytes()  # 11 alerts, as the file is
    schema, recs = ap.records(MULTI / "fink-client_part-3-305711.avro")  # 31 alerts, re-packed by 10, 10, 11
    values = [real, container(schema, recs[:10]), container(schema, recs[10:20]), container(schema, recs[20:])]
    produce(bs, topic, [(v, None) for v in values])
    ks = kafka_settings(bs, topic)
    s = stage(local_settings, local_store, ks)

    first = s.poll(max_alerts=12)  # 11 < 12: the second container is taken whole (21 alerts), never split
    second = s.poll(max_alerts=12)  # the same consumer goes on from the given-back message
    s.close()
    assert (first.n_messages, first.n_alerts) == (2, 21) and (second.n_messages, second.n_alerts) == (2, 21)
    assert offsets.group_offsets(ks)[0].lag == 0
    again = stage(local_settings, local_store, ks)  # a new consumer: the commit stopped where the polls did
    assert again.poll(timeout_s=10).n_messages == 0
    again.close()
    want = [r["candid"] for r in ap.records(MULTI / "fink-client_avro_multi_alerts.avro")[1] + recs]
    assert sorted(candids(local_store)) == sorted(want)


def test_a_cut_poll_commits_only_what_it_kept(kafka, local_settings, local_store):
    bs = kafka.env["bootstrap.servers"]
    topic = f"cut-{uuid.uuid4().hex[:6]}"
    make_topics(bs, topic, partitions=1)
    schema, recs = ap.records(MULTI / "fink-client_part-3-305711.avro")
    produce(bs, topic, [(container(schema, recs[i:i + 8]), None) for i in range(0, 24, 8)])
    ks = kafka_settings(bs, topic)
    s = stage(local_settings, local_store, ks)
    assert (s.poll(max_alerts=3).n_alerts, s.poll(max_alerts=3).n_alerts) == (8, 8)
    s.close()  # the third container was fetched and given back: committed offset 2, lag 1
    (part,) = offsets.group_offsets(ks)
    assert (part.committed, part.high, part.lag) == (2, 3, 1)


def run_cli(monkeypatch, ks: KafkaSettings, *args: str):
    for name, value in {"BOOTSTRAP_SERVERS": ks.bootstrap_servers, "TOPICS": ",".join(ks.topics),
                        "GROUP_ID": ks.group_id, "SESSION_TIMEOUT_MS": str(ks.session_timeout_ms)}.items():
        monkeypatch.setenv(f"SKYSIFT_KAFKA_{name}", value)
    return CliRunner().invoke(app, ["kafka", *args])


def rows(output: str, topic: str) -> list[list[str]]:
    """(partition, committed, high watermark, lag) per partition row of the printed table."""
    return [line.replace("│", " ").split()[1:] for line in output.splitlines() if topic in line and "│" in line]


def test_offsets_lag_reset_and_a_re_read_that_dedup_keeps_exactly_once(kafka, local_settings, local_store,
                                                                       monkeypatch):
    bs = kafka.env["bootstrap.servers"]
    topic = f"off-{uuid.uuid4().hex[:6]}"
    make_topics(bs, topic, partitions=2)
    made = ap.fink_packets(ap.FINK_CONTAINERS[:2])  # one alert per message, as Fink sends them
    produce(bs, topic, [(m.value, m.key) for m in made], partitions=2)
    ks = kafka_settings(bs, topic)
    n0, n1 = (len(made) + 1) // 2, len(made) // 2

    before = run_cli(monkeypatch, ks, "offsets")
    assert before.exit_code == 0, before.output
    assert rows(before.output, topic) == [["0", "-", str(n0), str(n0)], ["1", "-", str(n1), str(n1)]]
    assert f"total lag: {len(made)}" in before.output

    s = stage(local_settings, local_store, ks)
    assert s.poll().n_alerts == len(made)
    refused = run_cli(monkeypatch, ks, "reset", "--to", "earliest")  # the poller is still in the group
    assert refused.exit_code == 1 and "is active" in refused.output and "stop every poller" in refused.output
    with pytest.raises(FailedPrecondition):
        offsets.reset_offsets(ks, "earliest")
    s.close()

    after = run_cli(monkeypatch, ks, "offsets")
    assert rows(after.output, topic) == [["0", str(n0), str(n0), "0"], ["1", str(n1), str(n1), "0"]]

    reset = run_cli(monkeypatch, ks, "reset", "--to", "earliest")
    assert reset.exit_code == 0, reset.output
    assert rows(reset.output, topic) == [["0", "0", str(n0), str(n0)], ["1", "0", str(n1), str(n1)]]
    s = stage(local_settings, local_store, ks)
    reread = s.poll()
    s.close()
    assert reread.n_messages == len(made) and reread.n_alerts == 0 and reread.n_duplicates == len(made)
    assert sorted(candids(local_store)) == sorted(m.record["candid"] for m in made)  # exactly once

    assert [p.committed for p in offsets.reset_offsets(ks, "3", topic)] == [3, 3]
    assert [p.committed for p in offsets.reset_offsets(ks, str(10 ** 6))] == [n0, n1]  # clamped to the end
    assert [p.lag for p in offsets.reset_offsets(ks, "latest")] == [0, 0]
    bad = run_cli(monkeypatch, ks, "reset", "--to", "yesterday")
    assert bad.exit_code == 2 and "earliest, latest or an offset" in bad.output
    other = run_cli(monkeypatch, ks, "offsets", "--topic", "nope")
    assert other.exit_code == 2 and "not one of the configured" in other.output


def test_offsets_of_a_missing_topic_are_not_found(kafka):
    from skysift.errors import NotFound

    ks = kafka_settings(kafka.env["bootstrap.servers"], f"absent-{uuid.uuid4().hex[:6]}")
    with pytest.raises(NotFound, match="not found"):
        offsets.group_offsets(ks)


def test_offsets_and_reset_with_no_broker_are_unavailable(monkeypatch):
    from skysift.errors import Unavailable
    from tests.servers import free_port

    monkeypatch.setattr(offsets, "TIMEOUT_S", 1.0)
    ks = kafka_settings(f"127.0.0.1:{free_port()}", "alerts")
    with pytest.raises(Unavailable, match="reading offsets failed"):
        offsets.group_offsets(ks)
    with pytest.raises(Unavailable, match="resetting offsets failed"):  # the group's state is asked first
        offsets.reset_offsets(ks, "earliest")


def test_a_group_listing_no_member_is_reset_unless_the_broker_still_holds_one(kafka, local_settings, local_store,
                                                                             monkeypatch):
    """The reset counts live members as the broker describes the group. Tansu lists none even for a live consumer,
    and keeps one killed without leaving (STABLE, 0 members) until another member joins; the broker then refuses
    the offset change, which is reported as the group being active (exit 1), nothing moved. Once a poll has joined
    and left, the group is EMPTY and the reset goes through."""
    import signal
    import subprocess
    import sys
    import time

    bs = kafka.env["bootstrap.servers"]
    topic = f"dead-{uuid.uuid4().hex[:6]}"
    make_topics(bs, topic, partitions=1)
    made = ap.fink_packets(ap.FINK_CONTAINERS[:1])[:4]
    produce(bs, topic, [(m.value, m.key) for m in made])
    ks = kafka_settings(bs, topic)
    code = ("import sys\nfrom confluent_kafka import Consumer\n"
            f"c = Consumer({{'bootstrap.servers': {bs!r}, 'group.id': {ks.group_id!r}, 'session.timeout.ms': 6000, "
            "'auto.offset.reset': 'earliest', 'enable.auto.commit': False})\n"
            f"c.subscribe([{topic!r}])\n"
            "while True:\n"
            "    m = c.poll(0.5)\n"
            "    if m is not None and not m.error():\n"
            "        c.commit(m, asynchronous=False)\n"
            "        print('committed', flush=True)\n")
    consumer = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert consumer.stdout.readline().strip() == "committed"
    finally:
        consumer.send_signal(signal.SIGKILL)  # dies without leaving the group
        consumer.wait()
    time.sleep(ks.session_timeout_ms / 1000 + 1)  # its session has expired
    before = [p.committed for p in offsets.group_offsets(ks)]
    assert offsets.group_state(offsets._admin(ks), ks.group_id) == ("STABLE", 0)

    refused = run_cli(monkeypatch, ks, "reset", "--to", "latest")
    assert refused.exit_code == 1, refused.output
    assert "is active (state STABLE, no member listed, and the broker refused" in refused.output
    assert [p.committed for p in offsets.group_offsets(ks)] == before  # nothing moved

    s = stage(local_settings, local_store, ks)  # the remedy the message names: a poll joins, evicts it, leaves
    s.poll(max_alerts=1)
    s.close()
    assert offsets.group_state(offsets._admin(ks), ks.group_id)[0] == "EMPTY"
    reset = run_cli(monkeypatch, ks, "reset", "--to", "earliest")
    assert reset.exit_code == 0, reset.output
    assert [p.committed for p in offsets.group_offsets(ks)] == [0]
