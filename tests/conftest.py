"""Session-wide real servers (Kafka, S3, MLflow) on loopback, started once and always stopped."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from tests import servers

os.environ.update(servers.auth_env())  # every service started by a test requires these tokens, every client sends one

DATA = Path(__file__).parent / "data"
ALERTS = DATA / "alerts"
DEMO = Path(__file__).parent.parent / "demo"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA


@pytest.fixture(scope="session")
def kafka(tmp_path_factory):
    proc = servers.start_kafka(tmp_path_factory.mktemp("kafka"))
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    proc = servers.start_s3(tmp_path_factory.mktemp("s3"))
    yield proc
    proc.stop()


@pytest.fixture
def s3_settings(s3_server, monkeypatch):
    """Settings pointing at a fresh bucket on the real S3 server (one bucket per test)."""
    from skysift import config
    from skysift.store.s3 import S3Store

    for name, value in s3_server.env.items():
        monkeypatch.setenv(name, value)
    bucket = f"t-{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv("SKYSIFT_STORE_URL", f"s3://{bucket}/skysift")
    settings = config.load()
    S3Store(settings.store_url, settings).ensure_bucket()
    return settings


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    proc = servers.start_mlflow(tmp_path_factory.mktemp("mlflow"))
    yield proc
    proc.stop()


@pytest.fixture
def local_settings(tmp_path, monkeypatch):
    """Settings on a fresh local-directory store."""
    from skysift import config

    monkeypatch.setenv("SKYSIFT_STORE_URL", str(tmp_path / "store"))
    return config.load()


@pytest.fixture
def local_store(local_settings):
    from skysift.store import open_store

    return open_store(settings=local_settings)
