"""Datasets on a local store of real alerts: window, validated labels first, confident predictions as fallback,
quality report and manifest. MLflow is unreachable here on purpose: logging is best effort and says so."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pytest

from skysift import config
from skysift.errors import InvalidArgument
from skysift.features.core import FEATURE_COLUMNS
from skysift.store import keys
from skysift.trainer.datasets import DatasetRequest, Datasets
from skysift.trainer.labels import LabelEvent, LabelStore
from skysift.trainer.model import fit, limited_threads, model_params
from tests.trainer_data import oracle_table, write_fink_batches

JUNE2 = datetime(2025, 6, 2, tzinfo=UTC)


@pytest.fixture
def stocked(local_store, tmp_path):
    """Two polls of real alerts; 60 oracle labels in the first; the second scored by a model fitted on them."""
    pool = write_fink_batches(local_store)
    first, second = sorted(local_store.list_keys("features/"))
    in_first = set(local_store.read_table(first, columns=["candid"]).column("candid").to_pylist())
    oracle = oracle_table()
    chosen = oracle[oracle["candid"].isin(in_first)].head(60)
    LabelStore(local_store).submit([LabelEvent(candid=int(r.candid), label=r.label, user="oracle", source="oracle")
                                    for r in chosen.itertuples()])
    train = pool.merge(chosen.assign(target=(chosen["label"] == "galactic").astype(int)), on="candid")
    rows = pool[pool["candid"].isin(local_store.read_table(second, columns=["candid"]).column("candid").to_pylist())]
    with limited_threads(1):
        model = fit(train[FEATURE_COLUMNS], train["target"].to_numpy(), model_params({}), 0)
        p = model.predict_proba(rows[FEATURE_COLUMNS])[:, 1]
    predictions = pa.table({"candid": rows["candid"].to_numpy(), "model_tag": ["galactic"] * len(rows),
                            "prob_galactic": p, "prob_not_galactic": 1 - p})
    local_store.write_table(str(keys.parse_batch(second).sibling("predictions")), predictions)
    settings = config.Settings(store_url=local_store.url, mlflow_tracking_uri="http://127.0.0.1:9")
    return Datasets(settings, local_store), int((np.maximum(p, 1 - p) >= 0.9).sum())


def test_validated_labels_come_first_then_confident_predictions(stocked):
    datasets, n_confident = stocked
    d = datasets.collect(DatasetRequest(name="june", score_threshold=0.9, max_samples=1000))
    assert d.manifest["n_validated"] == 60 and d.manifest["n_predicted"] == n_confident
    samples = datasets.store.read_table(d.samples_key).to_pandas()
    assert len(samples) == d.n_samples == 60 + n_confident and samples["candid"].is_unique
    assert (samples[samples["source"] == "prediction"]["confidence"] >= 0.9).all()


def test_max_samples_keeps_validated_labels_over_predictions(stocked):
    datasets, _ = stocked
    d = datasets.collect(DatasetRequest(name="small", max_samples=50))
    samples = datasets.store.read_table(d.samples_key).to_pandas()
    assert len(samples) == 50 and set(samples["source"]) == {"oracle"}


def test_time_window_selects_batches_by_poll_time(stocked):
    datasets, _ = stocked
    d = datasets.collect(DatasetRequest(name="first hour", start=JUNE2.replace(hour=12), end=JUNE2.replace(hour=12, minute=30)))
    assert d.manifest["n_batches"] == 1 and d.manifest["n_predicted"] == 0 and d.n_samples == 60


def test_manifest_reports_balance_quality_and_that_mlflow_was_unreachable(stocked):
    datasets, _ = stocked
    d = datasets.collect(DatasetRequest(name="june"))
    assert sum(d.class_counts.values()) == d.n_samples and set(d.class_counts) == {"galactic", "not_galactic"}
    assert 0 < d.quality_score <= 1 and d.manifest["passed"] == (not d.quality_issues)
    assert d.manifest["mlflow"]["run_id"] is None and "not reachable" in d.manifest["mlflow"]["error"]
    assert datasets.get(d.dataset_id).n_samples == d.n_samples
    assert [x.dataset_id for x in datasets.list()] == [d.dataset_id]


def test_a_window_without_alerts_is_an_empty_dataset_reported_as_such(stocked):
    datasets, _ = stocked
    d = datasets.collect(DatasetRequest(name="no rubin yet", survey="lsst"))
    assert d.n_samples == 0 and d.manifest["n_batches"] == 0
    assert not d.manifest["passed"] and "no samples" in d.quality_issues


def test_one_class_dataset_is_reported_not_hidden(stocked):
    datasets, _ = stocked
    d = datasets.collect(DatasetRequest(name="one", prefer_validated=True, max_samples=1))
    assert not d.manifest["passed"] and any("only one class" in i for i in d.quality_issues)


def test_bad_requests_are_rejected(stocked):
    datasets, _ = stocked
    with pytest.raises(InvalidArgument, match="score_threshold"):
        datasets.collect(DatasetRequest(name="x", score_threshold=0.2))
    with pytest.raises(InvalidArgument, match="start is after end"):
        datasets.collect(DatasetRequest(name="x", start=JUNE2.replace(day=3), end=JUNE2))


def test_dataset_cli_collects_lists_and_shows(stocked, monkeypatch):
    from typer.testing import CliRunner

    from skysift import cli

    datasets, n_confident = stocked
    monkeypatch.setenv("SKYSIFT_STORE_URL", datasets.store.url)
    monkeypatch.setenv("SKYSIFT_MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    runner = CliRunner()
    collected = runner.invoke(cli.app, ["dataset", "collect", "june", "--start", "2025-06-01", "--max-samples", "500"])
    assert collected.exit_code == 0, collected.output
    dataset_id = collected.output.split()[0]
    assert f"{60 + n_confident} samples" in collected.output
    listed = runner.invoke(cli.app, ["dataset", "list"])
    assert listed.exit_code == 0 and listed.output.startswith(f"{dataset_id}  {60 + n_confident} samples")
    shown = runner.invoke(cli.app, ["dataset", "show", dataset_id])
    assert shown.exit_code == 0 and '"n_validated": 60' in shown.output
    missing = runner.invoke(cli.app, ["dataset", "show", "nope-1"])
    assert missing.exit_code == 2 and "skysift dataset list" in missing.output
    bad = runner.invoke(cli.app, ["dataset", "collect", "x", "--start", "June"])
    assert bad.exit_code == 2 and "--start expects an ISO date" in bad.output


def test_dataset_list_with_the_store_down_is_a_clear_error(monkeypatch):
    from typer.testing import CliRunner

    from skysift import cli
    from tests.servers import free_port

    monkeypatch.setenv("SKYSIFT_S3_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("SKYSIFT_STORE_URL", "s3://down/store")
    monkeypatch.setenv("SKYSIFT_S3_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("SKYSIFT_S3_SECRET_ACCESS_KEY", "test")
    listed = CliRunner().invoke(cli.app, ["dataset", "list"])
    assert listed.exit_code == 1 and "error: S3 endpoint unreachable" in listed.output, listed.output  # runtime failure


def test_dataset_cli_end_date_alone_includes_that_whole_day(stocked, monkeypatch):
    from typer.testing import CliRunner

    from skysift import cli

    datasets, n_confident = stocked  # both polls are on 2025-06-02, in the afternoon
    monkeypatch.setenv("SKYSIFT_STORE_URL", datasets.store.url)
    monkeypatch.setenv("SKYSIFT_MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    day = CliRunner().invoke(cli.app, ["dataset", "collect", "day", "--start", "2025-06-02", "--end", "2025-06-02"])
    assert day.exit_code == 0, day.output
    assert f"{60 + n_confident} samples" in day.output


def test_a_multi_class_tag_collects_its_classes_from_labels_and_confident_predictions(local_store, tmp_path,
                                                                                     monkeypatch):
    from skysift import modeltags
    from skysift.inference.taxonomy import column_name
    from tests.trainer_data import MULTICLASS_CLASSES as CLASSES
    from tests.trainer_data import MULTICLASS_TAG as TAG
    from tests.trainer_data import MULTICLASS_TAXONOMY as TAXONOMY
    from tests.trainer_data import host_class

    (tmp_path / "team.yaml").write_text(TAXONOMY)
    monkeypatch.setenv("SKYSIFT_TAXONOMY_FILE", str(tmp_path / "team.yaml"))
    modeltags.vocabulary.cache_clear()
    try:
        pool = write_fink_batches(local_store)
        first, second = sorted(local_store.list_keys("features/"))
        in_first = set(local_store.read_table(first, columns=["candid"]).column("candid").to_pylist())
        oracle = oracle_table()
        chosen = oracle[oracle["candid"].isin(in_first)].assign(label=lambda t: [host_class(r) for r in t.itertuples()])
        LabelStore(local_store).submit([LabelEvent(candid=int(r.candid), label=r.label, user="oracle", source="oracle")
                                        for r in chosen.itertuples()])
        train = pool.merge(chosen.assign(target=chosen["label"].map(CLASSES.index)), on="candid")
        rows = pool[pool["candid"].isin(local_store.read_table(second, columns=["candid"]).column("candid").to_pylist())]
        with limited_threads(1):
            proba = fit(train[FEATURE_COLUMNS], train["target"].to_numpy(), model_params({}), 0).predict_proba(
                rows[FEATURE_COLUMNS])
        local_store.write_table(str(keys.parse_batch(second).sibling("predictions")), pa.table({
            "candid": rows["candid"].to_numpy(), "model_tag": [TAG] * len(rows),
            **{column_name(c): proba[:, i] for i, c in enumerate(CLASSES)}}))
        settings = config.Settings(store_url=local_store.url, mlflow_tracking_uri="http://127.0.0.1:9")
        d = Datasets(settings, local_store).collect(DatasetRequest(name="classes", model_tag=TAG, score_threshold=0.8))
        confident = proba.max(axis=1) >= 0.8
        assert d.manifest["n_validated"] == len(chosen) and d.manifest["n_predicted"] == int(confident.sum())
        samples = local_store.read_table(d.samples_key).to_pandas()
        predicted = samples[samples["source"] == "prediction"].set_index("candid")
        expected = dict(zip(rows["candid"][confident], np.array(CLASSES)[proba[confident].argmax(axis=1)]))
        assert predicted["label"].to_dict() == expected
        assert d.class_counts == {c: int((samples["label"] == c).sum()) for c in CLASSES}
        assert sum(d.class_counts.values()) == len(samples)
    finally:
        modeltags.vocabulary.cache_clear()
