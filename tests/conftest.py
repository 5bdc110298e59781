"""Session-wide real servers (Kafka, S3, MLflow) on loopback, started once and always stopped."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

from tests import determinism, servers

os.environ.update(servers.auth_env())  # every service started by a test requires these tokens, every client sends one

DATA = Path(__file__).parent / "data"
ALERTS = DATA / "alerts"
DEMO = Path(__file__).parent.parent / "demo"

# CI: the same examples every run (derandomize) and no example database carried between runs; locally: random
# examples from the session's seed (printed in the header), replayable with SKYSIFT_TEST_SEED.
hypothesis_settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
hypothesis_settings.register_profile("local", print_blob=True)
hypothesis_settings.load_profile("ci" if determinism.IN_CI else "local")


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    """Seed hypothesis from the session seed (before its plugin reads --hypothesis-seed), unless given."""
    if not determinism.IN_CI and getattr(config.option, "hypothesis_seed", "absent") is None:
        config.option.hypothesis_seed = determinism.SEED


def pytest_report_header(config):
    mode = "CI: fixed seed, hypothesis derandomized" if determinism.IN_CI else "local: random seed"
    return (f"skysift test seed {determinism.SEED} ({mode}; SKYSIFT_TEST_SEED={determinism.SEED} replays it), "
            f"time factor {determinism.TIME_FACTOR:g}")


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


@pytest.fixture(scope="session")
def migrated_mlflow_db(tmp_path_factory) -> Path:
    """An empty MLflow sqlite store, created and migrated once for the session: MLflow's migrations take seconds
    each time a command opens a new one (a poll asks the registry for champions first)."""
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    uri = f"sqlite:///{path}"
    MlflowClient(tracking_uri=uri, registry_uri=uri).search_registered_models()  # creates and migrates every table
    return path


@pytest.fixture
def empty_mlflow_uri(migrated_mlflow_db, tmp_path) -> str:
    """A fresh, empty sqlite MLflow store of this test's own (a copy of the migrated one): no model registered."""
    import shutil

    copy = tmp_path / "mlflow.db"
    shutil.copyfile(migrated_mlflow_db, copy)
    return f"sqlite:///{copy}"


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


@pytest.fixture(scope="module")
def mlflow_prefix(request) -> str:
    """This module's own prefix for registered models (``SKYSIFT_MLFLOW_MODEL_PREFIX``) and experiments
    (``SKYSIFT_TRAINER_MLFLOW_EXPERIMENT_PREFIX``) on the session's MLflow server: no module sees another's
    champion, model versions or runs, whatever order the modules run in."""
    return "t-" + request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")


@pytest.fixture(scope="module", autouse=True)
def own_mlflow_names(mlflow_prefix):
    """Every module registers models and logs experiments under its own prefix: set in the environment for the
    module, so the in-process stages, ``config.load()`` and the services and CLIs the module starts all use it
    (a module that only reads a champion reads its own, not one another module's rounds moved)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SKYSIFT_MLFLOW_MODEL_PREFIX", mlflow_prefix)
        mp.setenv("SKYSIFT_TRAINER_MLFLOW_EXPERIMENT_PREFIX", mlflow_prefix)
        yield
