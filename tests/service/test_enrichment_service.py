"""skysift.v1.Enrichment over a real gRPC server on loopback, with and without a (local, fake) Lasair."""

from __future__ import annotations

import grpc
import pytest
from pydantic import SecretStr

from skysift.enrichment.core import ENRICHED_SCHEMA
from skysift.enrichment.service import EnrichmentServicer
from skysift.enrichment.settings import EnrichmentSettings
from skysift.v1 import enrichment_pb2, enrichment_pb2_grpc
from tests import servers
from tests.fakes.lasair import FakeLasair
from tests.fink_parquet import load_fink_alerts

ALERTS_KEY = "alerts/survey=ztf/night=20240601/20240601_120000_alerts.parquet"


@pytest.fixture
def lasair():
    fake = FakeLasair().start()
    yield fake
    fake.stop()


def _serve(local_settings, local_store, enrichment: EnrichmentSettings):
    local_store.write_table(ALERTS_KEY, load_fink_alerts()[0].slice(0, 12))
    servicer = EnrichmentServicer(local_settings, local_store, enrichment)
    return servers.loopback("Enrichment", enrichment_pb2_grpc.add_EnrichmentServicer_to_server, servicer, local_settings)


@pytest.fixture
def stub(local_settings, local_store):
    with _serve(local_settings, local_store, EnrichmentSettings()) as channel:
        yield enrichment_pb2_grpc.EnrichmentStub(channel), local_store


def test_enrich_without_a_token_writes_nulls_with_their_status(stub):
    client, store = stub
    resp = client.Enrich(enrichment_pb2.EnrichRequest(alerts_key=ALERTS_KEY), timeout=60)
    assert resp.enriched.key == "enriched/survey=ztf/night=20240601/20240601_120000_enriched.parquet"
    assert resp.enriched.rows == 12 and dict(resp.status_counts) == {"not_configured": 12}
    assert store.read_schema(resp.enriched.key).equals(ENRICHED_SCHEMA)


def test_enrich_asks_lasair_once_per_object_when_it_has_a_token(local_settings, local_store, lasair):
    settings = EnrichmentSettings(lasair_token=SecretStr(lasair.token), lasair_urls={"ztf": lasair.url}, timeout_seconds=5)
    with _serve(local_settings, local_store, settings) as channel:
        resp = enrichment_pb2_grpc.EnrichmentStub(channel).Enrich(enrichment_pb2.EnrichRequest(alerts_key=ALERTS_KEY),
                                                                  timeout=60)
    objects = set(local_store.read_table(ALERTS_KEY, columns=["objectId"])["objectId"].to_pylist())
    assert dict(resp.status_counts) == {"ok": 12}
    assert len(lasair.calls()) == len(objects)


@pytest.mark.parametrize("key,code,message", [
    ("", grpc.StatusCode.INVALID_ARGUMENT, "the alerts key is required"),
    ("features/survey=ztf/night=20240601/20240601_120000_features.parquet", grpc.StatusCode.INVALID_ARGUMENT,
     "expected a key under alerts/"),
    ("alerts/survey=ztf/night=20240602/20240602_120000_alerts.parquet", grpc.StatusCode.NOT_FOUND, "no object at key"),
])
def test_bad_or_unknown_keys_get_clear_status_codes(stub, key, code, message):
    client, _ = stub
    with pytest.raises(grpc.RpcError) as info:
        client.Enrich(enrichment_pb2.EnrichRequest(alerts_key=key), timeout=60)
    assert info.value.code() == code and message in info.value.details()
