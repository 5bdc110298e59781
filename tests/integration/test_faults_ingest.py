"""Faults during ingest against the real broker (Tansu) and the real S3 server (SeaweedFS).

- SIGKILL the ingest process at random points, many times, while the stream keeps flowing: every produced alert
  ends in alerts/ exactly once (by candid) and every object in the bucket reads whole.
The kill points are random; the seed is printed in every failure message (set SKYSIFT_FAULT_SEED to replay it).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from skysift.store import keys, open_store
from tests import alert_packets as ap
from tests.integration.test_ingest_kafka import make_topics, produce

REPO = Path(__file__).resolve().parents[2]

# The ingest as it runs in production (a long-lived consumer polling in a loop), in its own process to be killed.
# `--until-empty` stops at the first empty poll (the final, unkilled run); otherwise it keeps polling.
POLL_LOOP = """
import sys, time
from skysift import config
from skysift.store import open_store
from skysift.ingest.core import IngestStage
settings = config.load()
stage = IngestStage(settings, open_store(settings=settings))
for _ in range(500):
    if stage.poll().n_messages == 0:
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
    proc = subprocess.Popen([sys.executable, "-c", POLL_LOOP], env=env, cwd=REPO, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=open(log, "ab"))
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


@pytest.mark.parametrize("kills", [2, pytest.param(10, marks=pytest.mark.slow)])
def test_sigkill_at_random_points_on_s3_keeps_every_alert_exactly_once(kafka, s3_settings, tmp_path, kills):
    seed = int(os.environ.get("SKYSIFT_FAULT_SEED", random.randrange(2**32)))
    rng = random.Random(seed)
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
    for i in range(kills):
        batch = stream[i * per_run : (i + 1) * per_run]  # the stream keeps flowing between restarts
        produce(bs, topic, batch)
        produced += batch
        kill_points.append(kill_at_random_point(env, store, rng, log))
    produce(bs, topic, stream[kills * per_run :])
    produced += stream[kills * per_run :]
    final = subprocess.run([sys.executable, "-c", POLL_LOOP, "--until-empty"], env=env, cwd=REPO, timeout=180,
                           capture_output=True, text=True)

    where = f"seed {seed}, kills at: {'; '.join(kill_points)}"
    assert final.returncode == 0, f"{where}\n{final.stderr}"
    got = stored_candids(store)
    assert len(got) == len(set(got)), f"duplicates ({where})"
    assert sorted(got) == sorted(candid_of(m) for m in produced), where
    assert store.list_keys("dlq/") == [], where
    check_every_object_reads_whole(store)
