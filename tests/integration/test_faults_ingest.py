"""Faults during ingest against the real broker (Tansu) and the real S3 server (SeaweedFS).

- SIGKILL the ingest process at random points, many times, while the stream keeps flowing: every produced alert
  ends in alerts/ exactly once (by candid) and every object in the bucket reads whole.
  The kill points are drawn from the session's seed (tests/determinism.py: fixed in CI, random locally, printed in
  the pytest header and in every failure message; SKYSIFT_TEST_SEED replays it).
- S3 goes away right before each kind of request a poll makes (and a real SeaweedFS server is stopped mid-poll):
  the poll fails with Unavailable, commits no offset, and the next poll delivers every alert exactly once.
- The broker goes away between polls and comes back: the failed poll commits nothing, the next one resumes.
Servers are cut through a loopback TCP relay (:class:`Relay`): clients see refused connections and dropped
links, exactly as when the server process stops, while the server keeps its state (Tansu's in-memory engine
would lose it across a real restart).
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from skysift.errors import Unavailable
from skysift.store import keys, open_store
from tests import alert_packets as ap
from tests import servers
from tests.determinism import SEED, rng_for
from tests.integration.test_ingest_kafka import make_topics, produce

REPO = Path(__file__).resolve().parents[2]

# The ingest as it runs in production (a long-lived consumer polling in a loop), in its own process to be killed.
# A failed poll (e.g. a commit refused while the group rebalances after a kill) is retried, as the CronJob would.
# `--until-empty` stops at the first empty poll (the final, unkilled run); otherwise it keeps polling.
POLL_LOOP = """
import sys, time
from skysift import config
from skysift.errors import SkysiftError
from skysift.store import open_store
from skysift.ingest.core import IngestStage
settings = config.load()
stage = IngestStage(settings, open_store(settings=settings))
for _ in range(500):
    try:
        n = stage.poll().n_messages
    except SkysiftError as exc:
        print("poll failed, retrying:", exc, file=sys.stderr, flush=True)
        continue
    if n == 0:
        if "--until-empty" in sys.argv:
            break
        time.sleep(0.2)
stage.close()
"""


def alert_stream() -> list[ap.Made]:
    """Real packets in two wire formats on one topic: Fink's (schema in the key) and Rubin's (Confluent)."""
    fink = ap.fink_packets(ap.FINK_CONTAINERS)
    rubin = list(ap.rubin_v9()) + list(ap.rubin_v10(1100))
    mixed = [m for pair in zip(fink, rubin) for m in pair] + fink[len(rubin):]
    return mixed


def candid_of(m: ap.Made) -> int:
    return m.record["diaSourceId"] if "diaSourceId" in m.record else ap.expected_ztf(m.record)["candid"]


def stored_candids(store) -> list[int]:
    return [c for k in store.list_keys("alerts/") for c in store.read_table(k, columns=["candid"])["candid"].to_pylist()]


def ingest_env(bootstrap: str, topic: str, group: str) -> dict:
    return {**os.environ, "SKYSIFT_INGEST_SOURCE": "kafka", "SKYSIFT_INGEST_MAX_ALERTS": "4",
            "SKYSIFT_INGEST_TIMEOUT_S": "20", "SKYSIFT_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "SKYSIFT_KAFKA_TOPICS": topic, "SKYSIFT_KAFKA_GROUP_ID": group,
            "SKYSIFT_KAFKA_SESSION_TIMEOUT_MS": "4000", "SKYSIFT_LOG_LEVEL": "WARNING"}


def kill_at_random_point(env: dict, store, rng: random.Random, log: Path) -> str:
    """Start the poll loop and SIGKILL it either a random time after start (start-up, group join, fetch) or a
    random moment after it wrote its 1st-4th object (between the alerts file, its candid index and the commit)."""
    with open(log, "ab") as err:
        proc = subprocess.Popen([sys.executable, "-c", POLL_LOOP], env=env, cwd=REPO, start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=err)
    try:
        if rng.random() < 0.4:
            delay = rng.uniform(0.2, 6.0)
            what = f"{delay:.2f}s after start"
            time.sleep(delay)
        else:
            before, k, jitter = len(store.list_keys()), rng.randint(1, 4), rng.uniform(0, 0.3)
            what = f"{jitter:.2f}s after object {k} of this run"
            deadline = time.monotonic() + 60
            while len(store.list_keys()) < before + k and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.02)
            time.sleep(jitter)
        assert proc.poll() is None, f"the poll loop exited ({proc.returncode}) before the kill; see {log}"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    return what


def check_every_object_reads_whole(store) -> None:
    for key in store.list_keys():
        if key.startswith(("alerts/", "cutouts/")):
            keys.parse_batch(key)
        if key.endswith(".parquet"):
            store.read_table(key)  # a partial parquet file has no footer and fails here


# Tansu gives a member killed mid-join partitions on the next join until its session expires; the final run must
# still drain the whole topic in one go (it used to stop once its own partitions were drained: docs/guarantees.md).
# 10 kills take 65-115 s here: `make test-slow`.
@pytest.mark.parametrize("kills", [2, pytest.param(10, marks=pytest.mark.slow)])
def test_sigkill_at_random_points_on_s3_keeps_every_alert_exactly_once(kafka, s3_settings, tmp_path, kills):
    rng = rng_for(f"sigkill-{kills}")
    bs = kafka.env["bootstrap.servers"]
    topic = f"faults-{uuid.uuid4().hex[:6]}"
    make_topics(bs, topic)
    env = ingest_env(bs, topic, f"faults-{uuid.uuid4().hex[:6]}")
    store = open_store(settings=s3_settings)
    per_run = 8  # new alerts before each restart: two polls' worth, so kills land in polls that carry data
    stream = alert_stream()[: per_run * (kills + 1)]
    produced: list[ap.Made] = []
    log = tmp_path / "ingest.log"

    kill_points = []
    ends = [0, 0]  # messages produced per partition (produce() alternates them)
    for i in range(kills + 1):
        batch = stream[i * per_run : (i + 1) * per_run]  # the stream keeps flowing between restarts
        produce(bs, topic, batch)
        produced += batch
        ends = [ends[p] + len(batch[p::2]) for p in range(2)]
        if i < kills:
            kill_points.append(kill_at_random_point(env, store, rng, log))
    where = f"SKYSIFT_TEST_SEED={SEED}, kills at: {'; '.join(kill_points)}"
    final = subprocess.run([sys.executable, "-c", POLL_LOOP, "--until-empty"], env=env, cwd=REPO, timeout=180,
                           capture_output=True, text=True, check=False)  # one run, as the next CronJob would be
    assert final.returncode == 0, f"{where}\n{final.stderr}"
    assert committed_offsets(bs, env["SKYSIFT_KAFKA_GROUP_ID"], topic) == ends, f"not all consumed ({where})"
    got = stored_candids(store)
    assert len(got) == len(set(got)), f"duplicates ({where})"
    assert sorted(got) == sorted(candid_of(m) for m in produced), f"{where}\n{store.list_keys()}\n{final.stderr[-3000:]}"
    assert store.list_keys("dlq/") == [], where
    check_every_object_reads_whole(store)


class Relay:
    """A loopback TCP relay to a server that can be cut (refused connections, every open link dropped) and restored
    on the same port, possibly towards a new server port."""

    def __init__(self, target_port: int):
        self.target = target_port
        self.port = servers.free_port()
        self._links: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self.up()

    def up(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        listener.settimeout(0.1)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        self._listener.close()
        with self._lock:
            links, self._links = self._links, []
        for link in links:
            _close(link)

    def _accept(self, listener: socket.socket) -> None:
        while listener.fileno() != -1:
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target), timeout=5)
                upstream.settimeout(None)
            except OSError:
                _close(client)
                continue
            with self._lock:
                self._links += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pump, args=(a, b), daemon=True).start()


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(1 << 16):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        _close(src)
        _close(dst)


def committed_offsets(bootstrap: str, group: str, topic: str, partitions: int = 2) -> list[int]:
    """The group's committed offsets (negative: none), read without joining the group."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        return [tp.offset for tp in consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)]
    finally:
        consumer.close()


def ingest_stage(settings, bootstrap: str, topic: str, group: str, **kafka):
    from skysift.ingest.core import IngestStage
    from skysift.ingest.settings import IngestSettings, KafkaSettings

    return IngestStage(settings, open_store(settings=settings),
                       IngestSettings(source="kafka", timeout_s=15, keep_cutouts=True),
                       kafka=KafkaSettings(bootstrap_servers=bootstrap, topics=[topic], group_id=group,
                                           session_timeout_ms=6000, **kafka))


def cut_before(store, relay: Relay, operation: str, prefix: str, action=None) -> list[str]:
    """Cut S3 (relay.down, or ``action``) right before the first ``operation`` on a key under ``prefix``."""
    fired: list[str] = []

    def hook(params, **_):
        key = params.get("url_path", "") + "?" + str(params.get("query_string", ""))
        if not fired and (prefix in key or (operation == "ListObjectsV2" and prefix in str(params))):
            fired.append(key)
            (action or relay.down)()

    store.client.meta.events.register(f"before-call.s3.{operation}", hook)
    return fired


FAULT_STREAM = 6  # good alerts per test, plus one undecodable packet for the DLQ


def faulty_stream() -> tuple[list[ap.Made], ap.Made]:
    good = ap.fink_packets(ap.FINK_CONTAINERS[:1])[:FAULT_STREAM]
    return good, ap.Made(good[0].value[:100], {}, good[0].key)


SLOW = pytest.mark.slow  # each case costs two consumer-group joins (~4 s each on Tansu): one case runs by default


@pytest.mark.parametrize("operation,prefix", [
    pytest.param("ListObjectsV2", "alerts/", marks=SLOW),  # reading recent polls' candids, before any write
    pytest.param("PutObject", "alerts/", marks=SLOW),
    pytest.param("PutObject", "cutouts/", marks=SLOW),  # after the alerts file
    ("PutObject", "state/ingest/candids/"),  # after the alerts and cutouts files: the re-delivery is deduplicated
    pytest.param("PutObject", "dlq/", marks=SLOW),  # after every alerts-side file
])
def test_s3_gone_at_each_write_of_a_poll_fails_it_uncommitted_and_the_next_poll_delivers_all(
        kafka, s3_settings, operation, prefix):
    bs = kafka.env["bootstrap.servers"]
    topic, group = f"s3cut-{uuid.uuid4().hex[:6]}", f"g-{uuid.uuid4().hex[:6]}"
    make_topics(bs, topic)
    good, bad = faulty_stream()
    produce(bs, topic, [*good, bad])
    relay = Relay(int(s3_settings.s3_endpoint_url.rsplit(":", 1)[1]))
    settings = s3_settings.model_copy(update={"s3_endpoint_url": f"http://127.0.0.1:{relay.port}"})
    stage = ingest_stage(settings, bs, topic, group)
    fired = cut_before(stage.store, relay, operation, prefix)

    with pytest.raises(Unavailable, match="unavailable|unreachable"):
        stage.poll()
    assert fired, f"the poll made no {operation} under {prefix}"
    assert all(o < 0 for o in committed_offsets(bs, group, topic)), "a failed poll committed offsets"

    relay.up()
    again = stage.poll()
    stage.close()
    assert again.n_messages == len(good) + 1
    store = open_store(settings=s3_settings)
    got = stored_candids(store)
    assert sorted(got) == sorted(candid_of(m) for m in good)  # all, each exactly once
    assert [d["raw"] for k in store.list_keys("dlq/") for d in store.read_table(k).to_pylist()] == [bad.value]
    check_every_object_reads_whole(store)


def test_real_s3_server_stopped_mid_poll_then_started_again_loses_nothing(kafka, tmp_path, monkeypatch):
    """A dedicated SeaweedFS is stopped (SIGTERM) right before the poll writes its alerts file, then started again
    on the same data (its ports change: the relay keeps one endpoint for the client)."""
    from skysift import config

    s3 = servers.start_s3(tmp_path / "s3")
    relay = Relay(s3.port)
    try:
        for name, value in s3.env.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("SKYSIFT_S3_ENDPOINT_URL", f"http://127.0.0.1:{relay.port}")
        monkeypatch.setenv("SKYSIFT_STORE_URL", "s3://faults/skysift")
        settings = config.load()
        open_store(settings=settings).ensure_bucket()
        bs = kafka.env["bootstrap.servers"]
        topic, group = f"s3stop-{uuid.uuid4().hex[:6]}", f"g-{uuid.uuid4().hex[:6]}"
        make_topics(bs, topic)
        good, _ = faulty_stream()
        produce(bs, topic, good)
        stage = ingest_stage(settings, bs, topic, group)
        cut_before(stage.store, relay, "PutObject", "alerts/", action=s3.stop)

        with pytest.raises(Unavailable):
            stage.poll()
        assert s3.proc.poll() is not None and all(o < 0 for o in committed_offsets(bs, group, topic))

        s3 = servers.start_s3(tmp_path / "s3")
        relay.target = s3.port
        result = stage.poll()
        stage.close()
        assert result.n_messages == len(good)
        assert sorted(stored_candids(open_store(settings=settings))) == sorted(candid_of(m) for m in good)
    finally:
        relay.down()
        s3.stop()


@pytest.fixture
def relayed_broker(tmp_path):
    """A dedicated Tansu that advertises a relay, so that every client link goes through it and can be cut."""
    relay = Relay(servers.free_port())
    broker = servers.start_kafka(tmp_path, advertised_port=relay.port)
    relay.target = broker.port
    yield relay, f"127.0.0.1:{relay.port}"
    relay.down()
    broker.stop()


def test_broker_gone_between_polls_fails_the_poll_and_the_next_one_resumes_after_the_commit(
        relayed_broker, local_settings):
    relay, bs = relayed_broker
    topic, group = f"bk-{uuid.uuid4().hex[:6]}", f"g-{uuid.uuid4().hex[:6]}"
    make_topics(bs, topic)
    stream = alert_stream()[:12]
    produce(bs, topic, stream[:6])
    stage = ingest_stage(local_settings, bs, topic, group)
    assert stage.poll().n_alerts == 6

    relay.down()
    with pytest.raises(Unavailable, match="Kafka"):
        stage.poll(timeout_s=2)
    relay.up()
    produce(bs, topic, stream[6:])
    result = stage.poll()
    stage.close()
    assert result.n_messages == 6  # only the new ones: the first poll's commit survived the outage
    assert sorted(stored_candids(open_store(settings=local_settings))) == sorted(candid_of(m) for m in stream)
