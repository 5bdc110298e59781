"""Kafka and ingest settings from the environment, as Fink and BOOM users set them."""

from __future__ import annotations

from pathlib import Path

import pytest

from skysift import config
from skysift.errors import ConfigError
from skysift.ingest.settings import IngestSettings, KafkaSettings


def test_sasl_scram_settings_reach_the_consumer_config_and_the_password_stays_secret(monkeypatch):
    for name, value in {"BOOTSTRAP_SERVERS": "kafka.example:9093", "TOPICS": "fink_early_sn_ztf, fink_kn_ztf",
                        "SECURITY_PROTOCOL": "SASL_SSL", "SASL_MECHANISM": "SCRAM-SHA-512", "SASL_USERNAME": "u",
                        "SASL_PASSWORD": "s3cret", "SSL_CA_LOCATION": "/etc/ca.pem",
                        "FORMATS": '{"lsst": "confluent"}'}.items():
        monkeypatch.setenv(f"SKYSIFT_KAFKA_{name}", value)
    kafka = config.load(KafkaSettings)
    conf = kafka.consumer_config()
    assert kafka.topics == ["fink_early_sn_ztf", "fink_kn_ztf"]
    assert conf["sasl.password"] == "s3cret" and conf["sasl.mechanism"] == "SCRAM-SHA-512"
    assert conf["auto.offset.reset"] == "earliest" and conf["enable.auto.commit"] is False
    assert conf["ssl.ca.location"] == "/etc/ca.pem"
    assert kafka.topic_format("lsst") == "confluent" and kafka.topic_format("fink_kn_ztf") == "auto"
    assert "s3cret" not in repr(kafka)


def test_sasl_without_credentials_fails_fast():
    kafka = KafkaSettings(bootstrap_servers="b:9092", topics=["t"], security_protocol="SASL_SSL")
    with pytest.raises(ConfigError, match="SASL"):
        kafka.consumer_config()


def test_kafka_without_topics_fails_fast():
    with pytest.raises(ConfigError, match="SKYSIFT_KAFKA_TOPICS"):
        KafkaSettings(bootstrap_servers="b:9092").consumer_config()


def test_ingest_defaults_replay_the_bundled_demo_alerts(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    ingest = config.load(IngestSettings)
    assert (ingest.source, ingest.max_alerts, ingest.timeout_s, ingest.keep_cutouts) == ("replay", 1000, 60.0, False)
    assert ingest.default_replay_path().endswith("demo/alerts")
    assert any(Path(ingest.default_replay_path()).rglob("*.avro"))
