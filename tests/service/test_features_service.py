"""skysift.v1.Features over a real gRPC server on loopback, on real Fink alerts in a local store."""

from __future__ import annotations

import grpc
import pyarrow as pa
import pytest

from skysift.features.core import FEATURE_SET_VERSION, feature_set_version
from skysift.features.service import FeaturesServicer
from skysift.features.settings import FeaturesSettings
from skysift.v1 import features_pb2, features_pb2_grpc
from tests import servers
from tests.fink_parquet import load_fink_alerts

ALERTS_KEY = "alerts/survey=ztf/night=20240601/20240601_120000_alerts.parquet"
ENRICHED_KEY = "enriched/survey=ztf/night=20240601/20240601_120000_enriched.parquet"


@pytest.fixture
def stub(local_settings, local_store):
    local_store.write_table(ALERTS_KEY, load_fink_alerts()[0].slice(0, 40))
    servicer = FeaturesServicer(local_settings, local_store, FeaturesSettings())
    with servers.loopback("Features", features_pb2_grpc.add_FeaturesServicer_to_server, servicer, local_settings) as channel:
        yield features_pb2_grpc.FeaturesStub(channel), local_store


def test_compute_features_writes_the_versioned_table(stub):
    client, store = stub
    resp = client.ComputeFeatures(features_pb2.ComputeFeaturesRequest(alerts_key=ALERTS_KEY), timeout=60)
    assert resp.features.key == "features/survey=ztf/night=20240601/20240601_120000_features.parquet"
    assert (resp.features.survey, resp.features.rows) == ("ztf", 40)
    assert resp.feature_set_version == FEATURE_SET_VERSION and resp.n_flagged > 0
    assert feature_set_version(store.read_schema(resp.features.key)) == FEATURE_SET_VERSION


def test_the_enrichment_key_brings_host_and_extinction(stub):
    client, store = stub
    candid = store.read_table(ALERTS_KEY, columns=["candid"])["candid"][0].as_py()
    store.write_table(ENRICHED_KEY, pa.table({"candid": pa.array([candid], pa.int64()),
                                              "sherlock_separation_arcsec": [2.5], "ebv": [0.1]}))
    resp = client.ComputeFeatures(features_pb2.ComputeFeaturesRequest(alerts_key=ALERTS_KEY, enriched_key=ENRICHED_KEY),
                                  timeout=60)
    row = store.read_table(resp.features.key).slice(0, 1).to_pylist()[0]
    assert (row["sep_arcsec"], row["ebv"]) == (2.5, 0.1)


@pytest.mark.parametrize("key,code,message", [
    ("", grpc.StatusCode.INVALID_ARGUMENT, "the alerts key is required"),
    ("alerts/x.parquet", grpc.StatusCode.INVALID_ARGUMENT, "not a batch key"),
    ("alerts/survey=ztf/night=20240602/20240602_120000_alerts.parquet", grpc.StatusCode.NOT_FOUND, "no object at key"),
])
def test_bad_or_unknown_keys_get_clear_status_codes(stub, key, code, message):
    client, _ = stub
    with pytest.raises(grpc.RpcError) as info:
        client.ComputeFeatures(features_pb2.ComputeFeaturesRequest(alerts_key=key), timeout=60)
    assert info.value.code() == code and message in info.value.details()
