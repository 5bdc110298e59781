"""`skysift dlq list|replay` on a real Kafka-protocol broker (Tansu): messages dead-lettered by a wrong setting are
re-driven after the fix through the poll's decode and store path, each alert stored exactly once, and a letter
that still fails stays with its new reason."""

from __future__ import annotations

import json
import uuid

from confluent_kafka import Producer
from typer.testing import CliRunner

from skysift.cli import app
from tests import alert_packets as ap
from tests.integration.test_ingest_kafka import candids, kafka_settings, make_topics, produce, stage


def letters(store) -> list[dict]:
    return [d for k in store.list_keys("dlq/") for d in store.read_table(k).to_pylist()]


def test_dead_letters_of_a_wrong_setting_are_replayed_after_the_fix_every_alert_once(kafka, local_settings,
                                                                                     local_store, tmp_path,
                                                                                     monkeypatch, empty_mlflow_uri):
    bs = kafka.env["bootstrap.servers"]
    early, topic = (f"{what}-{uuid.uuid4().hex[:6]}" for what in ("dlq-early", "dlq"))
    make_topics(bs, early, topic, partitions=1)
    fink = ap.fink_packets(ap.FINK_CONTAINERS[:2])
    produce(bs, early, fink[:2], partitions=1)  # two of the alerts are stored before the replay
    s = stage(local_settings, local_store, kafka_settings(bs, [early]))
    assert s.poll().n_alerts == 2
    s.close()

    produce(bs, topic, fink, partitions=1)
    producer = Producer({"bootstrap.servers": bs})
    truncated = fink[-1].value[: len(fink[-1].value) // 3]
    producer.produce(topic, value=truncated, key=fink[-1].key, headers=[("origin", b"fink")])
    assert producer.flush(30) == 0
    wrong = {topic: "confluent"}  # the operator's mistake: Fink's topic declared as Confluent-framed
    s = stage(local_settings, local_store, kafka_settings(bs, [topic], formats=wrong))
    polled = s.poll()
    s.close()
    assert (polled.n_alerts, polled.n_dead_letters) == (0, len(fink) + 1)
    (wrong_reason,) = {d["error"] for d in letters(local_store) if d["raw"] == truncated}

    monkeypatch.setenv("SKYSIFT_MLFLOW_TRACKING_URI", empty_mlflow_uri)
    listed = CliRunner().invoke(app, ["dlq", "list"])
    assert listed.exit_code == 0, listed.output
    assert f"total: {len(fink) + 1} dead letters" in listed.output
    assert any(topic in line and "unknown Rubin schema id #" in line and f" {len(fink) + 1} " in line
               for line in listed.output.splitlines())  # one reason, whatever id each value's bytes read as

    monkeypatch.setenv("SKYSIFT_KAFKA_FORMATS", json.dumps(wrong))  # not fixed yet: every letter fails again
    again = CliRunner().invoke(app, ["dlq", "replay"])
    assert again.exit_code == 0, again.output
    assert len(letters(local_store)) == len(fink) + 1 and len(candids(local_store)) == 2

    monkeypatch.delenv("SKYSIFT_KAFKA_FORMATS")  # fixed
    replayed = CliRunner().invoke(app, ["dlq", "replay"])
    assert replayed.exit_code == 0, replayed.output
    assert f"{len(fink) - 2} alerts kept" in replayed.output and "2 duplicates, 1 dead letters" in replayed.output
    stored = candids(local_store)
    assert sorted(stored) == sorted(m.record["candid"] for m in fink)  # every alert, once
    (left,) = letters(local_store)  # the truncated message, with the key and headers it came with
    assert left["raw"] == truncated and left["key"] == fink[-1].key
    assert left["headers"] == [{"key": "origin", "value": b"fink"}]
    assert (left["topic"], left["offset"]) == (topic, len(fink))
    assert left["error"] != wrong_reason and "Rubin schema id" not in left["error"]  # its new reason

    done = CliRunner().invoke(app, ["dlq", "replay"])  # a second replay adds nothing and keeps the letter
    assert done.exit_code == 0, done.output
    assert sorted(candids(local_store)) == sorted(stored) and len(letters(local_store)) == 1
