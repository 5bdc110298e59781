"""InferenceStage against real servers: the MLflow registry (champion alias, reload) and S3 (SeaweedFS)."""

from __future__ import annotations

import uuid

import pytest
from typer.testing import CliRunner

from skysift.errors import FailedPrecondition
from skysift.inference.core import InferenceStage
from skysift.inference.registry import ChampionRegistry
from skysift.inference.settings import InferenceSettings
from skysift.store import keys, open_store
from tests.inference_support import (
    base_model,
    fink_batch,
    model_prefix,
    other_model,
    point_alias,
    store_batch,
)


@pytest.fixture(scope="module")
def batch():
    return fink_batch()


@pytest.fixture
def mlflow_env(mlflow_server, monkeypatch):
    uri = mlflow_server.env["SKYSIFT_MLFLOW_TRACKING_URI"]
    monkeypatch.setenv("SKYSIFT_MLFLOW_TRACKING_URI", uri)
    alias = f"it{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("SKYSIFT_INFERENCE_ALIAS", alias)
    return uri, alias


def stage(settings, alias: str) -> InferenceStage:
    return InferenceStage(settings, open_store(settings=settings),
                          InferenceSettings(model_tags=["galactic"], alias=alias))


def test_without_champion_score_batch_says_to_run_a_round(mlflow_env, local_settings, local_store, batch):
    key = store_batch(local_store, *batch)
    with pytest.raises(FailedPrecondition, match=r"^no model yet: run `skysift round`"):
        stage(local_settings, mlflow_env[1]).score_batch(key)


def test_score_batch_on_s3_writes_predictions_with_the_model_version(mlflow_env, s3_settings, batch):
    uri, alias = mlflow_env
    version = base_model(uri)
    point_alias(uri, "galactic", alias, version)
    st = stage(s3_settings, alias)
    key = store_batch(st.store, *batch)
    result = st.score_batch(key)
    assert result.written.key == str(keys.parse_batch(key).sibling("predictions"))
    stored = st.store.read_table(result.written.key)
    assert stored.num_rows == batch[0].num_rows
    assert set(stored.column("model_version").to_pylist()) == {version}
    assert stored.column("objectId").to_pylist() == batch[0].column("objectId").to_pylist()


def test_candids_scored_from_s3_match_the_batch(mlflow_env, s3_settings, batch):
    uri, alias = mlflow_env
    point_alias(uri, "galactic", alias, base_model(uri))
    st = stage(s3_settings, alias)
    key = store_batch(st.store, *batch)
    whole = st.score_batch(key, write=False).predictions
    picked = [whole.column("candid")[i].as_py() for i in (5, 0, 42)]
    some = st.score_candids(picked).predictions
    assert some.column("candid").to_pylist() == picked
    assert some.column("prob_galactic").to_pylist() == [whole.column("prob_galactic")[i].as_py() for i in (5, 0, 42)]


def test_registry_loads_the_version_the_alias_moves_to(mlflow_env):
    uri, alias = mlflow_env
    first, second = base_model(uri), other_model(uri)
    point_alias(uri, "galactic", alias, first)
    registry = ChampionRegistry(uri, ["galactic"], alias, model_prefix=model_prefix())
    assert registry.get("galactic").version == first
    point_alias(uri, "galactic", alias, second)
    assert registry.refresh() == {"galactic": f"loaded v{second}"}
    assert registry.get("galactic").version == second


def test_cli_scores_in_process(mlflow_env, local_settings, local_store, batch):
    from skysift.cli import app

    uri, alias = mlflow_env
    point_alias(uri, "galactic", alias, base_model(uri))
    key = store_batch(local_store, *batch)
    result = CliRunner().invoke(app, ["score", "--in-process", "--key", key, "--model-tag", "galactic"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert len(lines) == batch[0].num_rows
    assert lines[0].startswith(f"{batch[0].column('candid')[0].as_py()} ") and "galactic=" in lines[0]
