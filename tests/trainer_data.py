"""Real labelled data for the trainer's tests: Fink's test alerts with their features, and the oracle labels."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

DATA = Path(__file__).parent / "data"
LABELS_CSV = DATA / "alerts" / "ztf" / "fink_labeled" / "labels_cdsxmatch.csv"
SNAD_CSV = DATA / "tabular" / "snad_realbogus" / "akb_obj_features_snad4.csv"

# A team's taxonomy file with a multi-class tag whose classes the oracle's real types supply (see host_class)
MULTICLASS_TAG = "hostclass"
MULTICLASS_CLASSES = ("sn", "cv", "varstar", "galaxy")
MULTICLASS_TAXONOMY = textwrap.dedent(f"""\
    labels:
      - {{name: sn, key: "1", colour: "#6a1b9a", description: A supernova (SIMBAD or TNS).}}
      - {{name: cv, key: "2", colour: "#1565c0", description: A cataclysmic variable.}}
      - {{name: varstar, key: "3", colour: "#00838f", description: Another Galactic source.}}
      - {{name: galaxy, key: "4", colour: "#ef6c00", description: A galaxy or an AGN.}}
      - {{name: skip, key: "0", colour: "#757575", description: Not sure.}}
    tags:
      - name: {MULTICLASS_TAG}
        kind: multiclass
        classes: [{", ".join(MULTICLASS_CLASSES)}]
        hierarchy:
          Galactic: [cv, varstar]
          Extragalactic: [sn, galaxy]
    default_tag: {MULTICLASS_TAG}
    """)


def host_class(row) -> str:
    """An oracle_table() row's answer in MULTICLASS_TAXONOMY's classes (from its cleaned SIMBAD/TNS type)."""
    if row.clean_type == "Supernova":
        return "sn"
    if row.clean_type == "CataclyV*":
        return "cv"
    return "varstar" if row.label == "galactic" else "galaxy"


@pytest.fixture
def one_thread():
    """scikit-learn on one OpenMP thread, as rounds run (TrainerSettings.threads): threads spinning on a busy
    machine made a test's fits ~10-50x slower (108 s instead of 1.2 s)."""
    from skysift.trainer.model import limited_threads

    with limited_threads(1):
        yield


@lru_cache(maxsize=1)
def fink_alerts_and_features() -> tuple[pa.Table, pa.Table]:
    from skysift.features.core import compute_features
    from tests.fink_parquet import load_fink_alerts

    alerts, _ = load_fink_alerts()
    return alerts, compute_features(alerts)


def oracle_table() -> pd.DataFrame:
    from skysift.trainer.oracle import oracle_labels

    return oracle_labels(pd.read_csv(LABELS_CSV))


def write_fink_batches(store, batches: int = 2) -> pd.DataFrame:
    """Store the alerts and their features as ``batches`` polls an hour apart; return the feature rows."""
    from skysift.store import keys

    alerts, features = fink_alerts_and_features()
    n = alerts.num_rows
    edges = [round(i * n / batches) for i in range(batches + 1)]
    start = datetime(2025, 6, 2, 12, tzinfo=UTC)
    for i in range(batches):
        batch = keys.new_batch("alerts", "ztf", start + timedelta(hours=i))
        store.write_table(str(batch), alerts.slice(edges[i], edges[i + 1] - edges[i]))
        store.write_table(str(batch.sibling("features")), features.slice(edges[i], edges[i + 1] - edges[i]))
    return features.to_pandas()


def s3_mlflow_settings(s3_server, mlflow_server, model_prefix: str = "skysift"):
    """Settings on a fresh bucket of the session's S3 server, tracking to its MLflow server (for round tests),
    registering models as ``<model_prefix>_<tag>``."""
    import uuid

    from skysift import config
    from skysift.store.s3 import S3Store

    env = {**s3_server.env, **mlflow_server.env}
    s = config.Settings(
        store_url=f"s3://t-{uuid.uuid4().hex[:12]}/skysift", s3_endpoint_url=env["SKYSIFT_S3_ENDPOINT_URL"],
        s3_access_key_id=env["SKYSIFT_S3_ACCESS_KEY_ID"], s3_secret_access_key=env["SKYSIFT_S3_SECRET_ACCESS_KEY"],
        mlflow_tracking_uri=env["SKYSIFT_MLFLOW_TRACKING_URI"], mlflow_model_prefix=model_prefix,
    )
    S3Store(s.store_url, s).ensure_bucket()
    return s
