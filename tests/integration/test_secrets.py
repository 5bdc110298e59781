"""Secrets never show in logs or error messages: the services and a poll run with known secret values (S3 keys,
Kafka SASL password, Lasair token) through their failure paths, and every log line and message is scanned."""

from __future__ import annotations

import subprocess
import sys
import uuid

import grpc
import pytest
from skysift.v1 import enrichment_pb2, enrichment_pb2_grpc, ingest_pb2, ingest_pb2_grpc

from tests import servers
from tests.fakes.lasair import FakeLasair
from tests.fink_parquet import load_fink_alerts

ALERTS_KEY = "alerts/survey=ztf/night=20240601/20240601_120000_alerts.parquet"


@pytest.fixture
def secrets():
    token = f"lasair-secret-{uuid.uuid4().hex}"
    return {"SKYSIFT_S3_SECRET_ACCESS_KEY": servers.S3_SECRET_KEY, "SKYSIFT_KAFKA_SASL_PASSWORD": f"kafka-secret-{uuid.uuid4().hex}",
            "SKYSIFT_ENRICHMENT_LASAIR_TOKEN": token}


def leaks(text: str, secrets: dict) -> list[str]:
    return [name for name, value in secrets.items() if value in text]


def test_services_and_a_poll_never_show_a_secret(kafka, s3_server, s3_settings, secrets, tmp_path):
    from skysift.store import open_store

    open_store(settings=s3_settings).write_table(ALERTS_KEY, load_fink_alerts()[0].slice(0, 6))
    lasair = FakeLasair(token=secrets["SKYSIFT_ENRICHMENT_LASAIR_TOKEN"]).start()
    lasair.fail_next(*["500", "429:0"] * 20)  # every call fails: the error paths run with the token in use
    env = {**s3_server.env, **secrets, "SKYSIFT_STORE_URL": s3_settings.store_url, "SKYSIFT_LOG_LEVEL": "DEBUG",
           "SKYSIFT_INGEST_SOURCE": "kafka", "SKYSIFT_KAFKA_BOOTSTRAP_SERVERS": kafka.env["bootstrap.servers"],
           "SKYSIFT_KAFKA_TOPICS": "secrets", "SKYSIFT_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
           "SKYSIFT_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "SKYSIFT_KAFKA_SASL_USERNAME": "skysift",
           "SKYSIFT_INGEST_TIMEOUT_S": "1", "SKYSIFT_ENRICHMENT_LASAIR_ZTF_URL": lasair.url,
           "SKYSIFT_ENRICHMENT_TIMEOUT_SECONDS": "2"}
    ingest = servers.start_service("ingest", env, tmp_path)
    enrichment = servers.start_service("enrichment", env, tmp_path)
    messages = []
    try:
        with grpc.insecure_channel(f"127.0.0.1:{ingest.port}") as channel:
            with pytest.raises(grpc.RpcError) as failed:
                ingest_pb2_grpc.IngestStub(channel).Poll(ingest_pb2.PollRequest(), timeout=60)
            messages.append(failed.value.details())
        with grpc.insecure_channel(f"127.0.0.1:{enrichment.port}") as channel:
            resp = enrichment_pb2_grpc.EnrichmentStub(channel).Enrich(enrichment_pb2.EnrichRequest(alerts_key=ALERTS_KEY),
                                                                     timeout=60)
            messages.append(str(resp))
        poll = subprocess.run([sys.executable, "-m", "skysift.cli", "poll"], capture_output=True, text=True, timeout=120,
                              env={**env, **ingest.env, **enrichment.env}, check=False)
        messages += [poll.stdout, poll.stderr]
        check = subprocess.run([sys.executable, "-m", "skysift.cli", "config", "check"], capture_output=True, text=True,
                               timeout=60, env=env, check=False)
        messages += [check.stdout, check.stderr]
    finally:
        ingest.stop()
        enrichment.stop()
        lasair.stop()

    assert poll.returncode != 0 and "poll failed" in poll.stderr  # the failure path did run
    assert set(resp.status_counts) - {"ok", "cached"}, "Lasair was never failed: the error path did not run"
    logs = ingest.log_path.read_text() + enrichment.log_path.read_text()
    assert logs.count("\n") > 5
    assert leaks(logs, secrets) == [], "secret in a service log"
    assert leaks("\n".join(messages), secrets) == [], "secret in an error message or command output"
