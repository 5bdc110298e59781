"""`skysift round` on a local store with real alerts and a real MLflow server: in-process, and through a trainer
service on loopback on a collected dataset (``--dataset``)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from skysift import config
from skysift.cli import app
from skysift.store import open_store
from tests.servers import free_port
from tests.trainer_data import oracle_table, write_fink_batches


def test_round_in_process_queues_then_reports_unchanged(local_settings, mlflow_server, monkeypatch):
    for name, value in mlflow_server.env.items():
        monkeypatch.setenv(name, value)
    write_fink_batches(open_store(settings=local_settings))
    runner = CliRunner()
    args = ["round", "--in-process", "--experiment", "cli", "--initial-batch-size", "15", "--seed", "2"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "round 0 created (random): initial random batch" in first.output and "queue: 15 alerts" in first.output
    second = runner.invoke(app, args)
    assert second.exit_code == 0 and "round 0 unchanged" in second.output


def test_round_pool_flags_filter_the_queue_and_a_bad_band_fails_clearly(local_settings, mlflow_server, monkeypatch):
    for name, value in mlflow_server.env.items():
        monkeypatch.setenv(name, value)
    write_fink_batches(open_store(settings=local_settings))
    runner = CliRunner()
    empty = runner.invoke(app, ["round", "--in-process", "--experiment", "cli-pool", "--pool-survey", "lsst",
                                "--pool-min-detections", "3"])
    assert empty.exit_code == 0, empty.output
    assert "pass the pool filter (survey lsst, >= 3 detections)" in empty.output and "queue: 0 alerts" in empty.output
    bad = runner.invoke(app, ["round", "--in-process", "--experiment", "cli-pool-bad", "--pool-band", "R"])
    assert bad.exit_code == 2 and "unknown band 'R'" in bad.output


def test_round_with_a_bad_parameter_fails_clearly(local_settings):
    result = CliRunner().invoke(app, ["round", "--in-process", "--param", "depth=3"])
    assert result.exit_code == 2 and "unknown model parameter 'depth'" in result.output


@pytest.fixture(scope="module")
def collected(tmp_path_factory, mlflow_server, mlflow_prefix):
    """A trainer service on a store holding the Fink alerts and 60 oracle labels, and two datasets collected from
    them: ``passed`` (40 samples, both classes) and ``failed`` (one sample: one class, fails its quality checks)."""
    from skysift.rpc import server
    from skysift.trainer import service
    from skysift.trainer.datasets import DatasetRequest
    from skysift.trainer.labels import LabelEvent
    from skysift.trainer.settings import TrainerSettings

    settings = config.Settings(store_url=str(tmp_path_factory.mktemp("rounds-cli") / "store"),
                               mlflow_tracking_uri=mlflow_server.env["SKYSIFT_MLFLOW_TRACKING_URI"],
                               mlflow_model_prefix=mlflow_prefix)  # the versions counted below are the module's
    store = open_store(settings=settings)
    pool = write_fink_batches(store)
    oracle = oracle_table()
    labelled = oracle[oracle["candid"].isin(pool["candid"]) & (oracle["label"] != "skip")].head(60)
    servicer = service.TrainerServicer(settings, store, TrainerSettings(permutation_repeats=1,
                                                                        mlflow_experiment_prefix=mlflow_prefix))
    servicer.trainer.labels.submit([LabelEvent(candid=int(r.candid), label=r.label, user="oracle", source="oracle")
                                    for r in labelled.itertuples()])
    passed = servicer.datasets.collect(DatasetRequest(name="forty", max_samples=40))
    failed = servicer.datasets.collect(DatasetRequest(name="one", max_samples=1))
    assert not passed.quality_issues and failed.quality_issues
    running = server.start("trainer", lambda s: service.trainer_pb2_grpc.add_TrainerServicer_to_server(servicer, s)
                           or [service.SERVICE], settings, port=0, metrics_port=free_port())
    yield SimpleNamespace(settings=settings, store=store, passed=passed, failed=failed,
                          address=f"127.0.0.1:{running.port}")
    running.stop(0)


@pytest.fixture
def round_cli(collected, monkeypatch):
    """``skysift round --dataset ...`` as a user runs it: settings from the environment, the trainer service by default."""
    monkeypatch.setenv("SKYSIFT_STORE_URL", collected.settings.store_url)
    monkeypatch.setenv("SKYSIFT_MLFLOW_TRACKING_URI", collected.settings.mlflow_tracking_uri)
    monkeypatch.setenv("SKYSIFT_MLFLOW_MODEL_PREFIX", collected.settings.mlflow_model_prefix)
    monkeypatch.setenv("SKYSIFT_TRAINER_ADDRESS", collected.address)
    runner = CliRunner()
    return lambda *args: runner.invoke(app, ["round", *args])


def _said(result, start: str) -> bool:
    """Whether a line of the output starts with ``start`` (the in-process service's MLflow logs share the output)."""
    return any(line.startswith(start) for line in result.output.splitlines())


def _versions(collected) -> int:
    from mlflow import MlflowClient

    name = f"{collected.settings.mlflow_model_prefix}_galactic"
    return len(MlflowClient(collected.settings.mlflow_tracking_uri).search_model_versions(f"name='{name}'"))


def _meta(store, experiment: str, number: int) -> dict:
    return json.loads(store.get_bytes(f"rounds/{experiment}/round={number:03d}/meta.json"))


def test_a_round_on_a_dataset_trains_on_its_samples_only(collected, round_cli):
    result = round_cli("--experiment", "cli-ds", "--dataset", collected.passed.dataset_id)
    assert result.exit_code == 0, result.output
    assert _said(result, "round 0 created") and "model version" in result.output
    meta = _meta(collected.store, "cli-ds", 0)
    assert meta["dataset_id"] == collected.passed.dataset_id
    assert meta["result"]["n_train"] + meta["result"]["n_holdout"] == 40  # the dataset's samples, not the 60 labels
    assert f"trained on {meta['result']['n_train']}, held out {meta['result']['n_holdout']}" in result.output
    samples = set(collected.store.read_table(collected.passed.samples_key, columns=["candid"]).column("candid").to_pylist())
    trained = collected.store.read_table("rounds/cli-ds/round=000/training_ids.parquet", columns=["candid"])
    assert set(trained.column("candid").to_pylist()) <= samples


def test_the_same_dataset_again_returns_its_round_until_forced(collected, round_cli):
    """Rounds are idempotent per digest (the dataset id and the labels): nothing new, no new round or model
    version; --force trains again."""
    args = ("--experiment", "cli-ds-again", "--dataset", collected.passed.dataset_id)
    first = round_cli(*args)
    assert first.exit_code == 0 and _said(first, "round 0 created"), first.output
    version = _meta(collected.store, "cli-ds-again", 0)["result"]["model_version"]
    registered = _versions(collected)
    again = round_cli(*args)
    assert again.exit_code == 0, again.output
    assert _said(again, "round 0 unchanged") and f"same dataset {collected.passed.dataset_id!r} and labels as round 0" in again.output
    assert f"model version {version}" in again.output
    assert not collected.store.list_keys("rounds/cli-ds-again/round=001/") and _versions(collected) == registered
    forced = round_cli(*args, "--force")
    assert forced.exit_code == 0 and _said(forced, "round 1 created"), forced.output
    assert _meta(collected.store, "cli-ds-again", 1)["dataset_id"] == collected.passed.dataset_id


def test_a_dataset_that_failed_its_quality_checks_is_refused_without_force(collected, round_cli):
    result = round_cli("--experiment", "cli-ds-failed", "--dataset", collected.failed.dataset_id)
    assert result.exit_code == 1  # refused by the dataset's state (FAILED_PRECONDITION), not a malformed request
    assert f"dataset '{collected.failed.dataset_id}' failed its quality checks: only one class" in result.output
    assert "use force to train on it anyway" in result.output
    assert not collected.store.list_keys("rounds/cli-ds-failed/")


@pytest.mark.parametrize("where", [(), ("--in-process",)], ids=["service", "in-process"])
def test_an_unknown_dataset_id_fails_with_a_clear_message(collected, round_cli, where):
    result = round_cli(*where, "--experiment", "cli-ds-unknown", "--dataset", "nope-1")
    assert result.exit_code == 2
    assert _said(result, "error: no dataset 'nope-1'") and "Traceback" not in result.output
    assert not collected.store.list_keys("rounds/cli-ds-unknown/")
