"""What the inference tests share: real feature rows, a small real model registered on a real MLflow server the
way the trainer registers its models, and stored batches to score."""

from __future__ import annotations

import json
from datetime import UTC

import numpy as np
import pyarrow as pa

from skysift.modeltags import get_tag
from skysift.store import keys

# SIMBAD types (Fink's cdsxmatch) of stars and other galactic sources, for a target on real alerts.
GALACTIC_HINTS = ("*", "Star", "RRLyr", "Mira", "YSO", "LPV", "CV", "Nova", "WD", "Variable", "Cepheid", "BYDra",
                  "RSCVn", "delSct", "gammaDor", "Eruptive", "Irregular", "Orion", "Symbiotic", "Em")


def fink_batch() -> tuple[pa.Table, pa.Table]:
    """Real ZTF alerts (Fink's test parquet) as an alerts table, and their features."""
    from skysift.features.core import compute_features
    from tests.fink_parquet import load_fink_alerts

    alerts, _ = load_fink_alerts()
    return alerts, compute_features(alerts)


def galactic_target(alerts: pa.Table) -> np.ndarray:
    """1 where Fink's SIMBAD cross-match names a galactic type, else 0: a real label to fit the test model on."""
    kinds = alerts.column("cdsxmatch").to_pylist()
    return np.array([int(k is not None and any(h in k for h in GALACTIC_HINTS)) for k in kinds])


def register_model(tracking_uri: str, tag: str, features: pa.Table, y: np.ndarray, *, max_iter: int = 20,
                   feature_set_version: str | None = None, columns: list[str] | None = None,
                   alias: str = "champion", extra_tags: dict | None = None) -> str:
    """Fit a HistGradientBoostingClassifier on ``features`` and register it as the trainer does; return its version."""
    import mlflow
    import mlflow.sklearn
    import sklearn
    from mlflow.tracking import MlflowClient
    from sklearn.ensemble import HistGradientBoostingClassifier

    from skysift.features.core import FEATURE_COLUMNS, FEATURE_SET_VERSION

    # Columns that are NaN throughout (no enrichment here: sep_arcsec, ebv) cannot be binned: left out, as the
    # model's feature_columns tag then says.
    columns = list(columns or [c for c in FEATURE_COLUMNS if features.column(c).drop_null().to_numpy().size
                               and not np.isnan(features.column(c).to_numpy(zero_copy_only=False)).all()])
    X = features.select(columns).to_pandas()  # a DataFrame, as the trainer fits on
    model = HistGradientBoostingClassifier(max_iter=max_iter, random_state=0).fit(X, y)
    name = registered_name(tag)
    mlflow.set_tracking_uri(tracking_uri)
    client = MlflowClient(tracking_uri=tracking_uri)
    experiment = mlflow.set_experiment(f"{model_prefix()}/inference-tests-{tag}")
    with mlflow.start_run(experiment_id=experiment.experiment_id):
        info = mlflow.sklearn.log_model(  # pip_requirements given: inferring them takes tens of seconds
            model, name="model", pip_requirements=[f"scikit-learn=={sklearn.__version__}"],
            skops_trusted_types=["sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"])
    version = mlflow.register_model(info.model_uri, name).version
    tags = {"feature_set_version": feature_set_version or FEATURE_SET_VERSION, "model_tag": tag,
            "feature_columns": json.dumps(columns), **(extra_tags or {})}
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    if alias:
        client.set_registered_model_alias(name, alias, version)
    return str(version)


def store_batch(store, alerts: pa.Table, features: pa.Table, stem_seconds: int = 0) -> str:
    """Write ``alerts`` and ``features`` as one poll's batches; return the features key."""
    from datetime import datetime, timedelta

    when = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC) + timedelta(seconds=stem_seconds)
    batch = keys.new_batch("features", "ztf", when)
    store.write_table(str(batch.sibling("alerts")), alerts)
    store.write_table(str(batch), features)
    return str(batch)


class Loaded:
    """A registry holding models already in memory (the MLflow path is covered by the integration tests)."""

    def __init__(self, models):
        self.models = models

    def get(self, tag):
        from skysift.errors import FailedPrecondition

        if tag not in self.models:
            raise FailedPrecondition(f"no model yet: run `skysift round` (no champion for {tag})")
        return self.models[tag]


def in_memory_model():
    """Real alerts, their features and a galactic model fitted on them, as a served LoadedModel (no MLflow)."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    from skysift.features.core import FEATURE_COLUMNS, FEATURE_SET_VERSION
    from skysift.inference import taxonomy as tx
    from skysift.inference.registry import LoadedModel

    alerts, features = fink_batch()
    columns = tuple(c for c in FEATURE_COLUMNS
                    if not np.isnan(features.column(c).to_numpy(zero_copy_only=False)).all())
    X = np.column_stack([features.column(c).to_numpy(zero_copy_only=False) for c in columns])
    estimator = HistGradientBoostingClassifier(max_iter=20, random_state=0).fit(X, galactic_target(alerts))
    model = LoadedModel("galactic", "skysift_galactic", "7", FEATURE_SET_VERSION, columns,
                        tx.flat(("not_galactic", "galactic")), estimator)
    return alerts, features, model


_REGISTERED: dict[tuple[str, str, int], str] = {}


def base_model(tracking_uri: str, max_iter: int = 20) -> str:
    """A galactic model version per MLflow server, module prefix and ``max_iter``, registered once for the module's
    inference tests (registering takes seconds); tests point their own alias at it, so they never see each other's
    champions."""
    where = (tracking_uri, model_prefix(), max_iter)
    if where not in _REGISTERED:
        alerts, features = fink_batch()
        _REGISTERED[where] = register_model(tracking_uri, "galactic", features, galactic_target(alerts),
                                            max_iter=max_iter, alias="")
    return _REGISTERED[where]


def other_model(tracking_uri: str) -> str:
    """A second version (fewer iterations, so other probabilities) for tests where the champion moves."""
    return base_model(tracking_uri, max_iter=5)


def point_alias(tracking_uri: str, tag: str, alias: str, version: str) -> None:
    from mlflow.tracking import MlflowClient

    MlflowClient(tracking_uri=tracking_uri).set_registered_model_alias(registered_name(tag), alias, version)


def model_prefix() -> str:
    """The running module's registered-model prefix (``SKYSIFT_MLFLOW_MODEL_PREFIX``, set per module by the
    ``own_mlflow_names`` fixture)."""
    from skysift.config import Settings

    return Settings().mlflow_model_prefix


def registered_name(tag: str) -> str:
    """The running module's registered model for ``tag``, as the trainer and inference name it."""
    return get_tag(tag).registered_name(model_prefix())


def ztf_packets() -> list[bytes]:
    """Real ZTF alert packets (Avro container files) from several producers."""
    from pathlib import Path

    root = Path(__file__).parent / "data" / "alerts" / "ztf" / "avro"
    paths = [p for d in ("ztf-avro-alert", "kowalski", "alerce_ztf_samples", "fink-broker_distribute")
             for p in sorted((root / d).rglob("*.avro"))[:12]]
    return [p.read_bytes() for p in paths]
