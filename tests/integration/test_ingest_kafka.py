"""Ingest against a real Kafka-protocol broker (Tansu): real packets of every format, commits, DLQ, SIGKILL."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pyarrow as pa
import pytest

from skysift.ingest.core import IngestStage
from skysift.ingest.settings import IngestSettings, KafkaSettings
from tests import alert_packets as ap
from tests.alert_packets import check, expected_lsst, expected_ztf, row_by_candid

REPO = Path(__file__).resolve().parents[2]


def make_topics(bootstrap: str, *names: str, partitions: int = 2) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(n, num_partitions=partitions, replication_factor=1) for n in names]).values():
        future.result(timeout=30)


def produce(bootstrap: str, topic: str, made: list[ap.Made], partitions: int = 2) -> None:
    from confluent_kafka import Producer

    failed = []
    producer = Producer({"bootstrap.servers": bootstrap, "message.max.bytes": 8 << 20})
    for i, m in enumerate(made):
        producer.produce(topic, value=m.value, key=m.key, partition=i % partitions,
                         on_delivery=lambda err, msg: err and failed.append(err))
    assert producer.flush(30) == 0 and failed == []


def kafka_settings(bootstrap: str, topics: list[str], **kw) -> KafkaSettings:
    return KafkaSettings(bootstrap_servers=bootstrap, topics=topics, group_id=f"g-{uuid.uuid4().hex[:8]}",
                         session_timeout_ms=6000, **kw)


def stage(settings, store, kafka: KafkaSettings) -> IngestStage:
    return IngestStage(settings, store, IngestSettings(source="kafka", timeout_s=30), kafka=kafka)


def candids(store) -> list[int]:
    return [c for k in store.list_keys("alerts/") for c in store.read_table(k, columns=["candid"]).column("candid").to_pylist()]


def test_every_format_is_polled_with_fields_from_the_packets_and_committed(kafka, local_settings, local_store):
    bs = kafka.env["bootstrap.servers"]
    fink_t, ztf_t, rubin_t = (f"{n}-{uuid.uuid4().hex[:6]}" for n in ("fink", "ztf", "rubin"))
    make_topics(bs, fink_t, ztf_t, rubin_t)
    fink = ap.fink_packets(ap.FINK_CONTAINERS[:2])
    ztf = ap.ztf_containers([p for p in ap.ZTF_CONTAINERS if "kowalski" in str(p)][:3])
    rubin = ap.rubin_v9(3) + ap.rubin_v10(1100)[:3]
    produce(bs, fink_t, fink)
    produce(bs, ztf_t, ztf)
    produce(bs, rubin_t, rubin)
    ks = kafka_settings(bs, [fink_t, ztf_t, rubin_t], formats={rubin_t: "confluent"})
    s = stage(local_settings, local_store, ks)
    result = s.poll()
    s.close()

    assert result.n_messages == len(fink) + len(ztf) + len(rubin) and result.n_dead_letters == 0
    by_survey = {s: pa.concat_tables([local_store.read_table(b.key) for b in result.alerts if b.survey == s])
                 for s in ("ztf", "lsst")}  # one file per survey and observing night
    for m in fink[:3] + ztf:
        exp = expected_ztf(m.record)
        row = row_by_candid(by_survey["ztf"], exp["candid"])
        check(row, exp)
        assert row["topic"] == (fink_t if m in fink else ztf_t) and row["offset"] is not None
    for m in rubin:
        check(row_by_candid(by_survey["lsst"], m.record["diaSourceId"]), expected_lsst(m.record))
    assert sorted(candids(local_store)) == sorted([expected_ztf(m.record)["candid"] for m in fink + ztf]
                                                  + [m.record["diaSourceId"] for m in rubin])

    again = stage(local_settings, local_store, ks)  # a new consumer in the same group starts after the commit
    assert again.poll(timeout_s=15).n_messages == 0
    again.close()


def test_corrupt_truncated_and_wrong_schema_messages_go_to_the_dlq(kafka, local_settings, local_store):
    bs = kafka.env["bootstrap.servers"]
    topic = f"mixed-{uuid.uuid4().hex[:6]}"
    make_topics(bs, topic, partitions=1)
    good = ap.fink_packets(ap.FINK_CONTAINERS[:1])
    rubin_schema = ap.lsst.schema_for_id(1000)
    bad = [
        ap.Made(bytes(range(256)) * 8, {}, good[0].key),  # corrupt: not this schema's encoding at all
        ap.Made(good[0].value[: len(good[0].value) // 3], {}, good[0].key),  # truncated
        ap.Made(good[1].value, {}, rubin_schema),  # wrong schema: a ZTF payload keyed with Rubin's schema
    ]
    produce(bs, topic, [good[0], *bad, *good[1:]], partitions=1)
    s = stage(local_settings, local_store, kafka_settings(bs, [topic]))
    result = s.poll()
    s.close()

    dlq = local_store.read_table(result.dlq_key).to_pylist()
    assert [d["raw"] for d in dlq] == [m.value for m in bad]
    assert [d["offset"] for d in dlq] == [1, 2, 3] and {d["topic"] for d in dlq} == {topic}
    assert all(d["error"] for d in dlq)
    assert sorted(candids(local_store)) == sorted(expected_ztf(m.record)["candid"] for m in good)


def test_unreachable_broker_fails_the_poll_with_unavailable(local_settings, local_store):
    from skysift.errors import Unavailable
    from tests.servers import free_port

    s = stage(local_settings, local_store, kafka_settings(f"127.0.0.1:{free_port()}", ["t"]))
    with pytest.raises(Unavailable, match="unreachable"):
        s.poll(timeout_s=2)
    assert local_store.list_keys() == []


POLL_LOOP = """
from skysift import config
from skysift.store import open_store
from skysift.ingest.core import IngestStage
settings = config.load()
stage = IngestStage(settings, open_store(settings=settings))
for _ in range(100):
    if stage.poll().n_messages == 0:
        break
stage.close()
"""


def test_sigkill_mid_poll_on_s3_then_restart_finds_every_alert_exactly_once(kafka, s3_settings):
    from skysift.store import open_store

    bs = kafka.env["bootstrap.servers"]
    topic = f"kill-{uuid.uuid4().hex[:6]}"
    make_topics(bs, topic)
    made = ap.fink_packets(ap.FINK_CONTAINERS)[:40]
    produce(bs, topic, made)
    env = {**os.environ, "SKYSIFT_STORE_URL": s3_settings.store_url, "SKYSIFT_INGEST_SOURCE": "kafka",
           "SKYSIFT_INGEST_MAX_ALERTS": "4", "SKYSIFT_INGEST_TIMEOUT_S": "20", "SKYSIFT_KAFKA_BOOTSTRAP_SERVERS": bs,
           "SKYSIFT_KAFKA_TOPICS": topic, "SKYSIFT_KAFKA_GROUP_ID": f"kill-{uuid.uuid4().hex[:6]}",
           "SKYSIFT_KAFKA_SESSION_TIMEOUT_MS": "6000", "SKYSIFT_LOG_LEVEL": "WARNING"}
    cmd = [sys.executable, "-c", POLL_LOOP]
    store = open_store(settings=s3_settings)  # the S3 server's bucket (s3_settings): the claim is about S3's writes

    first = subprocess.Popen(cmd, env=env, cwd=REPO, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and first.poll() is None and not store.list_keys("alerts/"):
        time.sleep(0.005)
    os.killpg(first.pid, signal.SIGKILL)  # right after the first file is written: before or after its commit
    first.wait(10)
    assert first.returncode == -signal.SIGKILL, "the poll loop finished before it could be killed"
    assert 0 < len(candids(store)) < len(made)

    second = subprocess.run(cmd, env=env, cwd=REPO, timeout=120, capture_output=True, text=True)
    assert second.returncode == 0, second.stderr
    got = candids(store)
    assert sorted(got) == sorted(expected_ztf(m.record)["candid"] for m in made)  # all, each exactly once


# Another member of the group, in its own process so that it can die without leaving: prints each assignment.
MEMBER = """
import sys
from confluent_kafka import Consumer
c = Consumer({"bootstrap.servers": sys.argv[1], "group.id": sys.argv[2], "session.timeout.ms": int(sys.argv[4]),
              "enable.auto.commit": False, "auto.offset.reset": "latest"})
c.subscribe([sys.argv[3]], on_assign=lambda _, parts: print(sorted(p.partition for p in parts), flush=True))
for _ in range(3000):
    c.poll(0.1)
"""


def test_partitions_of_a_member_killed_mid_poll_are_drained_by_the_same_poll(kafka, local_settings, local_store):
    """The poll's consumer joins a live member, gets half the topic, and the member is SIGKILLed right then: the poll
    must not end once its half is drained (the other half would wait for the next poll, or on Tansu for a later
    join), but go on until the group hands it the dead member's partition, and deliver the whole topic."""
    bs = kafka.env["bootstrap.servers"]
    topic = f"orphan-{uuid.uuid4().hex[:6]}"
    make_topics(bs, topic)
    made = ap.fink_packets(ap.FINK_CONTAINERS)[:8]
    produce(bs, topic, made)
    ks = KafkaSettings(bootstrap_servers=bs, topics=[topic], group_id=f"g-{uuid.uuid4().hex[:8]}", session_timeout_ms=3000)
    member = subprocess.Popen([sys.executable, "-c", MEMBER, bs, ks.group_id, topic, str(ks.session_timeout_ms)],
                              stdout=subprocess.PIPE, text=True, start_new_session=True)
    killed_holding: list[str] = []

    def kill_once_it_holds_one_partition():
        for line in member.stdout:  # ends when the member exits
            if line.count(",") == 0 and line.strip() != "[]":
                os.killpg(member.pid, signal.SIGKILL)
                killed_holding.append(line.strip())

    try:
        assert member.stdout.readline().strip() == "[0, 1]"  # alone in the group first
        killer = threading.Thread(target=kill_once_it_holds_one_partition, daemon=True)
        killer.start()
        s = stage(local_settings, local_store, ks)
        result = s.poll(timeout_s=60)
        s.close()
    finally:
        if member.poll() is None:
            os.killpg(member.pid, signal.SIGKILL)
        member.wait(10)
    killer.join(10)
    assert killed_holding, "the member was never given half the topic, so it was not killed holding it"
    assert result.n_alerts == len(made)  # its own half may come twice (refetched after the rebalance): stored once
    assert sorted(candids(local_store)) == sorted(expected_ztf(m.record)["candid"] for m in made)


def test_rubin_packets_with_a_json_key_are_decoded_by_their_schema_id(kafka, local_settings, local_store):
    """A Confluent-framed value whose schema id skysift has wins over a key that merely starts with '{' (they all
    went to the dead letters, the key taken for a Fink schema)."""
    bs = kafka.env["bootstrap.servers"]
    topic = f"rubin-key-{uuid.uuid4().hex[:6]}"
    make_topics(bs, topic, partitions=1)
    made = [ap.Made(m.value, m.record, b'{"alertId": %d}' % i) for i, m in enumerate(ap.rubin_v9(3))]
    produce(bs, topic, made, partitions=1)
    s = stage(local_settings, local_store, kafka_settings(bs, [topic]))
    result = s.poll()
    s.close()
    assert result.n_dead_letters == 0 and result.n_alerts == len(made)
    assert sorted(candids(local_store)) == sorted(expected_lsst(m.record)["candid"] for m in made)


def test_dead_letters_keep_the_kafka_key_and_headers(kafka, local_settings, local_store):
    """A Fink message carries its schema in the key: a dead letter without it could never be decoded again."""
    from confluent_kafka import Producer

    bs = kafka.env["bootstrap.servers"]
    topic = f"dlq-key-{uuid.uuid4().hex[:6]}"
    make_topics(bs, topic, partitions=1)
    fink = ap.fink_packets(ap.FINK_CONTAINERS[:1])[0]
    truncated = fink.value[: len(fink.value) // 3]
    producer = Producer({"bootstrap.servers": bs})
    producer.produce(topic, value=truncated, key=fink.key, headers=[("origin", b"fink"), ("empty", b"")])
    producer.produce(topic, value=truncated)  # no key, no headers
    assert producer.flush(30) == 0
    s = stage(local_settings, local_store, kafka_settings(bs, [topic]))
    result = s.poll()
    s.close()
    dlq = local_store.read_table(result.dlq_key).to_pylist()
    assert [(d["key"], d["headers"]) for d in dlq] == [
        (fink.key, [{"key": "origin", "value": b"fink"}, {"key": "empty", "value": b""}]), (None, [])]


def test_an_in_process_poll_leaves_the_group_and_a_reset_is_allowed_right_after(kafka, tmp_path):
    """`skysift poll --in-process` closed no consumer: the group stayed STABLE (Tansu never lists members) until
    its session expired, the next poll waited for its partitions and `kafka reset` refused."""
    from typer.testing import CliRunner

    from skysift.cli import app
    from skysift.ingest import offsets

    bs = kafka.env["bootstrap.servers"]
    topic = f"close-{uuid.uuid4().hex[:6]}"
    make_topics(bs, topic, partitions=1)
    made = ap.fink_packets(ap.FINK_CONTAINERS[:2])
    produce(bs, topic, made, partitions=1)
    group = f"close-{uuid.uuid4().hex[:6]}"
    env = {**os.environ, "SKYSIFT_STORE_URL": str(tmp_path / "store"), "SKYSIFT_INGEST_SOURCE": "kafka",
           "SKYSIFT_MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
           "SKYSIFT_INGEST_TIMEOUT_S": "20", "SKYSIFT_KAFKA_BOOTSTRAP_SERVERS": bs, "SKYSIFT_KAFKA_TOPICS": topic,
           "SKYSIFT_KAFKA_GROUP_ID": group, "SKYSIFT_KAFKA_SESSION_TIMEOUT_MS": "6000", "SKYSIFT_LOG_LEVEL": "WARNING"}
    polled = subprocess.run([str(Path(sys.executable).parent / "skysift"), "poll", "--in-process"], env=env, cwd=REPO,
                            timeout=120, capture_output=True, text=True)
    assert polled.returncode == 0 and polled.stdout.startswith(f"polled {len(made)} messages"), polled.stdout + polled.stderr
    settings = kafka_settings(bs, [topic])
    assert offsets.group_state(offsets._admin(settings), group)[0] == "EMPTY"  # left; not STABLE until evicted
    reset = CliRunner().invoke(app, ["kafka", "reset", "--to", "earliest"], env={
        k: v for k, v in env.items() if k.startswith("SKYSIFT_KAFKA_")})
    assert reset.exit_code == 0, reset.output


def test_a_stopped_ingest_service_leaves_the_group(kafka, tmp_path):
    """SIGTERM to `skysift serve ingest` after a poll: its long-lived consumer leaves the group on the way out."""
    from skysift.ingest import offsets
    from skysift.v1 import ingest_pb2, ingest_pb2_grpc
    from tests import servers

    bs = kafka.env["bootstrap.servers"]
    topic, group = (f"{what}-{uuid.uuid4().hex[:6]}" for what in ("served", "served"))
    make_topics(bs, topic, partitions=1)
    made = ap.fink_packets(ap.FINK_CONTAINERS[:1])
    produce(bs, topic, made, partitions=1)
    env = {"SKYSIFT_STORE_URL": str(tmp_path / "store"), "SKYSIFT_INGEST_SOURCE": "kafka",
           "SKYSIFT_KAFKA_BOOTSTRAP_SERVERS": bs, "SKYSIFT_KAFKA_TOPICS": topic, "SKYSIFT_KAFKA_GROUP_ID": group,
           "SKYSIFT_KAFKA_SESSION_TIMEOUT_MS": "6000", "SKYSIFT_SHUTDOWN_GRACE_SECONDS": "1"}
    ingest = servers.start_service("ingest", env, tmp_path)
    try:
        with servers.channel(ingest.port) as channel:
            polled = ingest_pb2_grpc.IngestStub(channel).Poll(ingest_pb2.PollRequest(timeout_seconds=20), timeout=60)
        assert polled.n_messages == len(made)
        settings = kafka_settings(bs, [topic])
        assert offsets.group_state(offsets._admin(settings), group)[0] == "STABLE"  # the consumer stays between polls
    finally:
        ingest.stop()
    assert ingest.proc.returncode == 0
    assert offsets.group_state(offsets._admin(settings), group)[0] == "EMPTY"  # left; not STABLE until evicted


def held_partitions(records, topic: str) -> dict[str, list[str]]:
    """What each polling thread's consumer holds now, by its latest 'kafka partitions held' log line."""
    held = {}
    for r in records:
        if r.getMessage() == "kafka partitions held" and all(p.startswith(topic + "[") for p in r.partitions):
            held[r.threadName] = r.partitions
    return held


def test_two_consumers_of_one_group_take_a_partition_each_and_store_every_alert_once(kafka, local_settings,
                                                                                   local_store, caplog):
    """Scaling out ingest is adding consumers to the group (ingest replicas): on a two-partition topic, two consumers
    of one group, each its own IngestStage polling in a loop as a replica's poller does, are given a partition each
    by the broker's group coordination (no manual assignment), each stores its partition's alerts, together every
    alert once, and the group's offsets are committed on both partitions."""
    from skysift.ingest import offsets

    caplog.set_level(logging.INFO, logger="skysift.ingest.kafka")
    bs = kafka.env["bootstrap.servers"]
    topic = f"scale-{uuid.uuid4().hex[:6]}"
    make_topics(bs, topic)
    ks = kafka_settings(bs, [topic]).model_copy(update={"session_timeout_ms": 3000})  # polls settle sooner
    consumers = {f"consumer-{i}": stage(local_settings, local_store, ks) for i in range(2)}
    written: dict[str, list] = {name: [] for name in consumers}  # the alerts batches each consumer's polls wrote
    failures: list[BaseException] = []
    stop = threading.Event()

    def poll_until_stopped(name: str) -> None:
        try:
            while not stop.is_set():
                written[name] += consumers[name].poll(timeout_s=5).alerts
        except BaseException as exc:  # noqa: BLE001 - reported by the test's thread
            failures.append(exc)

    threads = [threading.Thread(target=poll_until_stopped, args=(name,), name=name) for name in consumers]
    for t in threads:
        t.start()
    made = ap.fink_packets(ap.FINK_CONTAINERS)  # 156 real alerts, round robin over the two partitions
    try:
        deadline, held = time.monotonic() + 60, {}
        while time.monotonic() < deadline and not failures:  # both members in the group before the alerts come
            held = held_partitions(caplog.records, topic)
            if len(held) == 2 and sorted(p for ps in held.values() for p in ps) == [f"{topic}[0]", f"{topic}[1]"]:
                break
            time.sleep(0.1)
        assert all(len(ps) == 1 for ps in held.values()) and len(held) == 2, f"not one partition each: {held}"
        produce(bs, topic, made)
        while time.monotonic() < deadline and not failures and len(candids(local_store)) < len(made):
            time.sleep(0.2)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
        for s in consumers.values():
            s.close()
    assert not failures, failures

    read_from = {}  # consumer -> {partition: rows} of the alerts it stored
    for name, batches in written.items():
        parts = pa.concat_tables([local_store.read_table(b.key, columns=["partition"]) for b in batches])
        read_from[name] = {p: parts.column("partition").to_pylist().count(p) for p in set(parts.column("partition").to_pylist())}
    assert sorted(tuple(r) for r in read_from.values()) == [(0,), (1,)], read_from  # a partition each, never both
    assert sorted(n for r in read_from.values() for n in r.values()) == [len(made) // 2, len(made) // 2]
    assert sorted(candids(local_store)) == sorted(expected_ztf(m.record)["candid"] for m in made)  # each exactly once
    # committed past each partition's last message (78 each); not checked against the high watermark, which Tansu
    # 0.6.0 reports as the base offset of the partition's last record batch + 1 (its memory storage's ListOffsets)
    assert sorted((p.partition, p.committed) for p in offsets.group_offsets(ks)) == [(0, len(made) // 2),
                                                                                    (1, len(made) // 2)]
