"""FeaturesStage on a local store: where it writes, what it records, which keys it refuses."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from skysift.errors import InvalidArgument, NotFound
from skysift.features.core import FEATURE_SET_VERSION, FEATURES_SCHEMA, feature_set_version
from skysift.features.settings import FeaturesSettings
from skysift.features.stage import FeaturesStage
from tests.fink_parquet import load_fink_alerts

ALERTS_KEY = "alerts/survey=ztf/night=20240601/20240601_120000_alerts.parquet"
ENRICHED_KEY = "enriched/survey=ztf/night=20240601/20240601_120000_enriched.parquet"
FEATURES_KEY = "features/survey=ztf/night=20240601/20240601_120000_features.parquet"


@pytest.fixture(scope="module")
def alerts():
    return load_fink_alerts()[0].slice(0, 60)


@pytest.fixture
def store(local_store, alerts):
    local_store.write_table(ALERTS_KEY, alerts)
    return local_store


def test_writes_features_beside_the_batch_with_the_version(local_settings, store, alerts):
    result = FeaturesStage(local_settings, store, FeaturesSettings()).process(ALERTS_KEY)
    assert result.features.key == FEATURES_KEY and result.features.rows == alerts.num_rows
    assert result.feature_set_version == FEATURE_SET_VERSION
    schema = store.read_schema(FEATURES_KEY)
    assert feature_set_version(schema) == FEATURE_SET_VERSION
    assert schema.remove_metadata().equals(FEATURES_SCHEMA.remove_metadata())


def test_counts_flagged_alerts_and_keeps_them_by_default(local_settings, store):
    result = FeaturesStage(local_settings, store, FeaturesSettings()).process(ALERTS_KEY)
    flagged = pc.sum(store.read_table(FEATURES_KEY)["no_positive_detection"]).as_py()
    assert result.n_flagged == flagged > 0


def test_drops_flagged_alerts_when_set(local_settings, store, alerts):
    result = FeaturesStage(local_settings, store, FeaturesSettings(drop_no_positive_detection=True)).process(ALERTS_KEY)
    assert result.features.rows == alerts.num_rows - result.n_flagged
    assert not pc.any(store.read_table(FEATURES_KEY)["no_positive_detection"]).as_py()


def test_uses_the_enrichment_of_the_same_batch(local_settings, store, alerts):
    candid = alerts["candid"].to_pylist()[0]
    store.write_table(ENRICHED_KEY, pa.table({"candid": pa.array([candid], pa.int64()),
                                              "sherlock_separation_arcsec": [1.25], "ebv": [0.05]}))
    FeaturesStage(local_settings, store, FeaturesSettings()).process(ALERTS_KEY, ENRICHED_KEY)
    row = store.read_table(FEATURES_KEY).slice(0, 1).to_pylist()[0]
    assert row["candid"] == candid and row["sep_arcsec"] == 1.25 and row["ebv"] == 0.05


@pytest.mark.parametrize("alerts_key,enriched_key,message", [
    ("alerts/nope.parquet", None, "expected e.g."),
    (FEATURES_KEY, None, "expected a key under alerts/"),
    (ALERTS_KEY, "enriched/survey=ztf/night=20240601/20240601_130000_enriched.parquet", "is not the enrichment of"),
])
def test_refuses_malformed_or_mismatched_keys(local_settings, store, alerts_key, enriched_key, message):
    with pytest.raises(InvalidArgument, match=message):
        FeaturesStage(local_settings, store, FeaturesSettings()).process(alerts_key, enriched_key)


def test_missing_batch_is_not_found(local_settings, local_store):
    with pytest.raises(NotFound):
        FeaturesStage(local_settings, local_store, FeaturesSettings()).process(ALERTS_KEY)


def test_a_table_that_is_not_alerts_is_refused(local_settings, local_store):
    local_store.write_table(ALERTS_KEY, pa.table({"candid": [1, 2]}))
    with pytest.raises(InvalidArgument, match="not an alerts table"):
        FeaturesStage(local_settings, local_store, FeaturesSettings()).process(ALERTS_KEY)


def test_keeps_its_nights_candid_index_piece_up_to_date_when_a_batch_is_rewritten(local_settings, store):
    from skysift.features.candid_pieces import piece_keys, read_candids

    FeaturesStage(local_settings, store, FeaturesSettings()).process(ALERTS_KEY)
    FeaturesStage(local_settings, store, FeaturesSettings(drop_no_positive_detection=True)).process(ALERTS_KEY)
    assert len(piece_keys(store)[("ztf", "20240601")]) == 1  # the first run's piece replaced
    kept = store.read_table(FEATURES_KEY)["candid"].to_pylist()
    store.delete(FEATURES_KEY)  # what follows comes from the piece alone
    assert read_candids(store, [FEATURES_KEY])[FEATURES_KEY].tolist() == kept
