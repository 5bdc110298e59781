"""Sherlock through Lasair's API, against a local server that answers as Lasair does (429, 500, timeouts too)."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from skysift.enrichment import lasair
from skysift.enrichment.core import EnrichmentStage
from skysift.enrichment.lasair import LasairClient, SherlockCache, SherlockClient
from skysift.enrichment.settings import EnrichmentSettings
from tests.determinism import scaled
from tests.fakes.lasair import FakeLasair, SkyObject
from tests.fink_parquet import load_fink_alerts

ALERTS_KEY = "alerts/survey=ztf/night=20240601/20240601_120000_alerts.parquet"


@pytest.fixture(scope="module")
def alerts():
    table = load_fink_alerts()[0]
    first = {}
    for i, o in enumerate(table["objectId"].to_pylist()):
        first.setdefault(o, i)
    return table.take(sorted(first.values())[:6])  # six distinct real objects


@pytest.fixture
def fake(alerts):
    server = FakeLasair().start()
    rows = alerts.select(["objectId", "ra", "dec"]).to_pylist()
    server.add(SkyObject(rows[0]["objectId"], rows[0]["ra"], rows[0]["dec"], "SN", 0.82, "NED_D", "NGC 1"))
    server.add(SkyObject(rows[1]["objectId"], rows[1]["ra"], rows[1]["dec"], "AGN", 0.11, "MILLIQUAS", "QSO 7"))
    server.add(SkyObject(rows[2]["objectId"], rows[2]["ra"], rows[2]["dec"], "VS", 0.05, "GAIA_DR2", "4242"))
    yield server
    server.stop()


def _settings(fake, **overrides) -> EnrichmentSettings:
    values = dict(lasair_token=SecretStr(fake.token), lasair_urls={"ztf": fake.url}, timeout_seconds=scaled(0.3), max_retries=2,
                  backoff_seconds=0.01, max_wait_seconds=1.0, max_consecutive_failures=2)
    return EnrichmentSettings(**{**values, **overrides})


def _client(fake, store=None, **overrides) -> SherlockClient:
    s = _settings(fake, **overrides)
    cache = SherlockCache(store, "ztf", s.cache_prefix) if store is not None else None
    return SherlockClient(LasairClient(s.lasair_url("ztf"), s.lasair_token, s.timeout_seconds), cache, s)


def _objects(alerts):
    return [(r["objectId"], r["ra"], r["dec"]) for r in alerts.select(["objectId", "ra", "dec"]).to_pylist()]


def test_position_lookup_sends_the_token_and_reads_class_and_best_match(fake, alerts):
    objects = _objects(alerts)
    result = _client(fake).lookup(objects[:1])
    match = result[objects[0][0]]
    assert (match.status, match.classification, match.separation_arcsec) == ("ok", "SN", 0.82)
    assert (match.catalogue, match.catalogue_object_id) == ("NED_D", "NGC 1")  # rank 1, though listed second
    (request,) = fake.calls()
    assert request.path == "/api/sherlock/position/" and request.authorization == f"Token {fake.token}"
    assert float(request.params["ra"]) == pytest.approx(objects[0][1], abs=1e-6)


def test_a_position_without_context_is_orphan_with_no_separation(fake, alerts):
    object_id = _objects(alerts)[4][0]
    match = _client(fake).lookup(_objects(alerts)[4:5])[object_id]
    assert (match.status, match.classification, match.separation_arcsec) == ("ok", "ORPHAN", None)


def test_object_lookup_falls_back_to_the_position_for_objects_lasair_lacks(fake, alerts):
    objects = _objects(alerts)
    result = _client(fake, sherlock_lookup="object").lookup([objects[1], objects[5]])
    assert result[objects[1][0]].classification == "AGN"
    assert result[objects[5][0]].classification == "ORPHAN"
    assert [r.path for r in fake.calls()] == ["/api/sherlock/object/", "/api/sherlock/object/",
                                              "/api/sherlock/position/"]


def test_answers_are_cached_in_the_store_and_not_asked_again(fake, alerts, local_store):
    objects = _objects(alerts)
    _client(fake, local_store).lookup(objects)
    asked = len(fake.calls())
    again = _client(fake, local_store).lookup(objects)
    assert {m.status for m in again.values()} == {"cached"}
    assert again[objects[0][0]].separation_arcsec == 0.82
    assert len(fake.calls()) == asked == len(objects)
    assert local_store.exists(f"enrichment/sherlock_cache/ztf/{objects[0][0]}.json")


def test_a_short_429_is_waited_out_and_retried(fake, alerts):
    fake.fail_next("429:0")
    objects = _objects(alerts)[:1]
    assert _client(fake).lookup(objects)[objects[0][0]].status == "ok"
    assert len(fake.calls()) == 2


def test_a_spent_quota_stops_calls_for_the_batch_and_the_next_batch_gets_them(fake, alerts, local_store):
    objects = _objects(alerts)
    fake.fail_next("429:3599")
    first = _client(fake, local_store).lookup(objects)
    assert {m.status for m in first.values()} == {"rate_limited"}
    assert len(fake.calls()) == 1
    second = _client(fake, local_store).lookup(objects)
    assert {m.status for m in second.values()} == {"ok"}


def test_server_errors_are_retried_then_reported_unavailable_and_the_batch_goes_on(fake, alerts):
    objects = _objects(alerts)
    fake.fail_next("500", "500", "500")
    result = _client(fake).lookup(objects[:3])
    assert [result[o].status for o, _, _ in objects[:3]] == ["unavailable", "ok", "ok"]
    assert len(fake.calls()) == 3 + 2


def test_timeouts_count_as_unavailable_and_a_down_lasair_is_left_alone(fake, alerts):
    objects = _objects(alerts)
    fake.fail_next("timeout", "timeout")
    result = _client(fake, max_retries=0).lookup(objects)
    assert {m.status for m in result.values()} == {"unavailable"}
    assert len(fake.calls()) == 2  # max_consecutive_failures, then no more calls


def test_a_bad_token_is_rejected_and_not_cached(fake, alerts, local_store):
    objects = _objects(alerts)[:2]
    result = _client(fake, local_store, lasair_token=SecretStr("wrong")).lookup(objects)
    assert {m.status for m in result.values()} == {"rejected"}
    assert local_store.list_keys("enrichment/") == []


def test_the_call_budget_defers_the_rest_of_the_batch(fake, alerts):
    result = _client(fake, max_calls_per_batch=2).lookup(_objects(alerts))
    assert [m.status for m in result.values()] == ["ok", "ok", "deferred", "deferred", "deferred", "deferred"]
    assert len(fake.calls()) == 2


def test_enrichment_survives_429_500_and_timeouts_losing_nothing(fake, alerts, local_settings, local_store):
    local_store.write_table(ALERTS_KEY, alerts)
    stage = EnrichmentStage(local_settings, local_store, _settings(fake, max_retries=0, max_consecutive_failures=5))
    fake.fail_next("500", "timeout")
    first = stage.process(ALERTS_KEY)
    assert first.enriched.rows == alerts.num_rows
    assert first.status_counts == {"unavailable": 2, "ok": 4}
    fake.fail_next("429:3599")
    second = stage.process(ALERTS_KEY)
    assert second.status_counts == {"cached": 4, "rate_limited": 2}
    third = stage.process(ALERTS_KEY)
    assert third.status_counts == {"cached": 4, "ok": 2}
    table = local_store.read_table(first.enriched.key)
    assert table["candid"].to_pylist() == alerts["candid"].to_pylist()
    assert table["sherlock_classification"].to_pylist()[:3] == ["SN", "AGN", "VS"]
    assert lasair.NOT_CONFIGURED not in third.status_counts


def test_the_cache_lives_in_s3_and_spares_lasair_on_the_next_batch(fake, alerts, s3_settings):
    from skysift.store import open_store

    store = open_store(settings=s3_settings)
    store.write_table(ALERTS_KEY, alerts)
    stage = EnrichmentStage(s3_settings, store, _settings(fake))
    assert stage.process(ALERTS_KEY).status_counts == {"ok": alerts.num_rows}
    assert stage.process(ALERTS_KEY).status_counts == {"cached": alerts.num_rows}
    assert len(fake.calls()) == alerts.num_rows
    assert len(store.list_keys("enrichment/sherlock_cache/ztf/")) == alerts.num_rows
