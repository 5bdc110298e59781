"""Fuzzing every method of the finished gRPC services (Ingest, Enrichment, Features, Inference) on a real loopback
server: a malformed request gets INVALID_ARGUMENT, NOT_FOUND or FAILED_PRECONDITION with a message (never
INTERNAL or UNKNOWN), and the server keeps serving. Requests over SKYSIFT_GRPC_MAX_MESSAGE_MB are refused.

Requests point at real objects too: a real alerts batch and its features, an object under alerts/ that is not
parquet, and a features table stored under an alerts key. No model is registered, so scoring ends in
FAILED_PRECONDITION. (Not under features/: one unreadable features object makes every ScoreCandids fail, see
the report of issue 10.)
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from skysift import config
from skysift.rpc import server
from skysift.store import keys, open_store
from skysift.v1 import (
    enrichment_pb2,
    enrichment_pb2_grpc,
    features_pb2,
    features_pb2_grpc,
    inference_pb2,
    inference_pb2_grpc,
    ingest_pb2,
    ingest_pb2_grpc,
)
from skysift.validation import MAX_TIMEOUT_S
from tests import alert_packets as ap
from tests import servers

CLEAR = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION,
         grpc.StatusCode.PERMISSION_DENIED}  # the last: a label naming another user than the caller
# function_scoped_fixture: ``served`` checks the server once after all of a test's examples, on purpose.
FUZZ = settings(max_examples=40, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
MAX_MB = 1


def register_all(s, settings_, store):
    from skysift.enrichment.service import EnrichmentServicer
    from skysift.features.service import FeaturesServicer
    from skysift.inference.core import InferenceStage
    from skysift.inference.service import InferenceServicer
    from skysift.ingest.service import IngestServicer

    ingest_pb2_grpc.add_IngestServicer_to_server(IngestServicer(settings_, store), s)
    enrichment_pb2_grpc.add_EnrichmentServicer_to_server(EnrichmentServicer(settings_, store), s)
    features_pb2_grpc.add_FeaturesServicer_to_server(FeaturesServicer(settings_, store), s)
    inference_pb2_grpc.add_InferenceServicer_to_server(InferenceServicer(InferenceStage(settings_, store)), s)
    return ["skysift.v1.Ingest", "skysift.v1.Enrichment", "skysift.v1.Features", "skysift.v1.Inference"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A store with one real batch (alerts + features), a corrupt object and a mislabelled table."""
    from skysift.alerts.decode import decode_packets
    from skysift.features.core import compute_features

    tmp = tmp_path_factory.mktemp("fuzz-grpc")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SKYSIFT_STORE_URL", str(tmp / "store"))
        mp.setenv("SKYSIFT_MLFLOW_TRACKING_URI", f"sqlite:///{tmp / 'mlflow.db'}")
        mp.setenv("SKYSIFT_GRPC_MAX_MESSAGE_MB", str(MAX_MB))
        mp.setenv("SKYSIFT_INFERENCE_MODEL_TAGS", "galactic")
        mp.setenv("SKYSIFT_INGEST_REPLAY_ROOT", str(tmp))
        settings_ = config.load()
        store = open_store(settings=settings_)
        alerts = decode_packets([m.value for m in ap.rubin_v9(3)]).alerts["lsst"]
        batch = keys.new_batch("alerts", "lsst")
        store.write_table(str(batch), alerts)
        store.write_table(str(batch.sibling("features")), compute_features(alerts))
        corrupt = keys.BatchKey("alerts", "ztf", "20250101", "20250101_000000")
        store.put_bytes(str(corrupt), b"not a parquet file")
        mislabelled = keys.BatchKey("alerts", "ztf", "20250102", "20250102_000000")
        store.write_table(str(mislabelled), compute_features(alerts))
        empty_dir = tmp / "empty"
        empty_dir.mkdir()
        running = server.start("fuzz", lambda s: register_all(s, settings_, store), settings_, servers.free_port())
        channel = servers.channel(running.port)
        yield {
            "channel": channel,
            "keys": [str(batch), str(batch.sibling("features")), str(batch.sibling("enriched")), str(corrupt),
                     str(corrupt.sibling("features")), str(mislabelled)],  # the last but one is absent
            "candids": alerts.column("candid").to_pylist(),
            "empty_dir": str(empty_dir),
            "packets": [m.value for m in ap.rubin_v9(2)],
        }
        channel.close()
        running.stop(0)


def object_keys(world) -> st.SearchStrategy[str]:
    """Existing keys, well-formed keys of absent batches, near misses and arbitrary text."""
    shaped = st.from_regex(r"\A(alerts|enriched|features|predictions|cutouts)/survey=(ztf|lsst)/night=\d{8}/"
                           r"\d{8}_\d{6}_(alerts|enriched|features)\.parquet\Z")
    return st.one_of(st.sampled_from(world["keys"]), shaped, st.text(max_size=80),
                     st.sampled_from(["/etc/passwd", "../alerts/x", "alerts/../../x", "alerts/", " ", "\x00"]))


def outcome(call):
    """None when the call succeeded, else the (code, details) of its error, asserted to be a clear one."""
    try:
        result = call()
        if hasattr(result, "__next__"):  # a stream: drain it
            list(result)
        return None
    except grpc.RpcError as exc:
        assert exc.code() in CLEAR, f"{exc.code()}: {exc.details()}"
        assert exc.details() and exc.details().strip(), f"{exc.code()} without a message"
        return exc.code(), exc.details()


@pytest.fixture
def served(world):
    """The module's server, checked to be still serving after the test (each fuzz test checks its own calls)."""
    yield world
    assert_still_serving(world)


def assert_still_serving(world) -> None:
    health = health_pb2_grpc.HealthStub(world["channel"])
    status = health.Check(health_pb2.HealthCheckRequest(service="skysift.v1.Features"), timeout=10).status
    assert status == health_pb2.HealthCheckResponse.SERVING
    features = features_pb2_grpc.FeaturesStub(world["channel"])
    assert features.ComputeFeatures(features_pb2.ComputeFeaturesRequest(alerts_key=world["keys"][0]), timeout=60).features.rows == 3


int32 = st.integers(-(2**31), 2**31 - 1)
doubles = st.floats(allow_nan=True, allow_infinity=True)


@FUZZ
@given(data=st.data())
def test_fuzzed_ingest_polls_get_a_clear_status(served, data):
    world = served
    stub = ingest_pb2_grpc.IngestStub(world["channel"])
    path = data.draw(st.one_of(st.just(world["empty_dir"]), st.text(max_size=40).filter(lambda p: not os.path.exists(p))))
    keep = data.draw(st.one_of(st.none(), st.booleans()))
    request = ingest_pb2.PollRequest(max_alerts=data.draw(int32), timeout_seconds=data.draw(doubles), replay_path=path,
                                     filter=data.draw(st.one_of(st.just(""), st.just("fink_vra"), st.text(max_size=20))),
                                     **({} if keep is None else {"keep_cutouts": keep}))
    result = outcome(lambda: stub.Poll(request, timeout=60))
    valid_numbers = request.max_alerts >= 0 and 0 <= request.timeout_seconds <= MAX_TIMEOUT_S  # NaN compares False
    if not valid_numbers:
        assert result is not None and result[0] == grpc.StatusCode.INVALID_ARGUMENT
    elif path == world["empty_dir"] and request.filter in ("", "fink_vra"):
        assert result is None  # a valid poll of an empty replay directory polls nothing, and succeeds
    elif path != "":  # (no path: the configured source)
        assert result is not None  # no such replay path


@FUZZ
@given(data=st.data())
def test_fuzzed_enrich_and_compute_features_requests_get_a_clear_status(served, data):
    world = served
    enrich = enrichment_pb2_grpc.EnrichmentStub(world["channel"])
    features = features_pb2_grpc.FeaturesStub(world["channel"])
    key, other = data.draw(object_keys(world)), data.draw(st.one_of(st.just(""), object_keys(world)))
    enriched = outcome(lambda: enrich.Enrich(enrichment_pb2.EnrichRequest(alerts_key=key), timeout=60))
    computed = outcome(lambda: features.ComputeFeatures(
        features_pb2.ComputeFeaturesRequest(alerts_key=key, enriched_key=other), timeout=60))
    alerts_batch = world["keys"][0]
    if key == alerts_batch:  # the one stored alerts batch: enriching it, and its features alone, must work
        assert enriched is None
        if other == "":
            assert computed is None
    elif key not in world["keys"]:  # nothing stored there
        assert enriched is not None and computed is not None
    elif key == world["keys"][3]:  # not a parquet file
        assert enriched[0] == grpc.StatusCode.FAILED_PRECONDITION
        if other == "":
            assert computed[0] == grpc.StatusCode.FAILED_PRECONDITION


@FUZZ
@given(data=st.data())
def test_fuzzed_inference_requests_get_a_clear_status(served, data):
    world = served
    stub = inference_pb2_grpc.InferenceStub(world["channel"])
    tags = data.draw(st.lists(st.one_of(st.just("galactic"), st.text(max_size=12)), max_size=3))
    key = data.draw(object_keys(world))
    candids = data.draw(st.lists(st.one_of(st.sampled_from(world["candids"]), st.integers(-(2**63), 2**63 - 1)),
                                 max_size=5))
    packets = data.draw(st.lists(st.one_of(st.sampled_from(world["packets"]), st.binary(max_size=200)), max_size=3))
    fmt = data.draw(st.one_of(st.sampled_from(["", "auto", "avro", "confluent", "schemaless", "parquet"]),
                              st.text(max_size=12)))
    schema = data.draw(st.one_of(st.just(""), st.text(max_size=40), st.just('{"type": "record", "fields": []}')))
    score = inference_pb2.ScoreRequest(features_key=key, model_tags=tags, skip_write=data.draw(st.booleans()))
    scored = [outcome(lambda: stub.Score(score, timeout=60)), outcome(lambda: stub.StreamScores(score, timeout=60)),
              outcome(lambda: stub.ScoreCandids(inference_pb2.ScoreCandidsRequest(candids=candids, model_tags=tags),
                                                timeout=60)),
              outcome(lambda: stub.ScoreAlerts(inference_pb2.ScoreAlertsRequest(
                  packets=packets, format=fmt, schema_json=schema, model_tags=tags, enrich=False), timeout=60))]
    # the server's MLflow has no model: nothing can be scored, whatever the request
    assert None not in scored
    if key == world["keys"][1] and set(tags) <= {"galactic"}:  # a stored features batch, the served tag
        assert scored[0][0] == grpc.StatusCode.FAILED_PRECONDITION and "no model yet" in scored[0][1]
    assert outcome(lambda: stub.ListModels(inference_pb2.ListModelsRequest(), timeout=60)) is None


class Records(logging.Handler):
    """Every log record of this process while installed (the servers under test run in it)."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)

    def tracebacks(self) -> list[str]:
        return [r.getMessage() for r in self.records if r.exc_info or "Exception deserializing" in r.getMessage()]


@contextlib.contextmanager
def recorded_logs():
    handler, root = Records(), logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)


def raw_methods(channel, *modules) -> dict[str, object]:
    """Each method of the services in ``modules`` (generated *_pb2), called with raw bytes as its request."""
    calls = {}
    for module in modules:
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                path = f"/{service.full_name}/{method.name}"
                if method.server_streaming:
                    calls[path] = lambda raw, path=path: list(channel.unary_stream(path)(raw, timeout=60))
                else:
                    calls[path] = lambda raw, path=path: channel.unary_unary(path)(raw, timeout=60)
    return calls


# no message parses these: an invalid wire type, a truncated length, an unterminated varint, a string cut short
NOT_A_MESSAGE = [b"\xff", b"\x0a\xff\xff", b"\x08\x80\x80\x80", b"\x12\x05ab"]


def check_random_bytes(calls: dict, data) -> None:
    """Garbage is INVALID_ARGUMENT saying so; bytes that happen to parse get a clear status; no traceback logged."""
    with recorded_logs() as logs:
        for path, send in calls.items():
            for raw in NOT_A_MESSAGE:
                code, details = outcome(functools.partial(send, raw))
                assert code == grpc.StatusCode.INVALID_ARGUMENT and "not a valid" in details, (path, raw, details)
            outcome(functools.partial(send, data.draw(st.binary(max_size=200), label=path)))
    assert logs.tracebacks() == []


@FUZZ
@given(data=st.data())
def test_random_bytes_as_the_request_of_every_method_are_invalid_argument_without_a_traceback(served, data):
    check_random_bytes(raw_methods(served["channel"], ingest_pb2, enrichment_pb2, features_pb2, inference_pb2), data)


def test_non_finite_poll_timeouts_are_invalid_arguments(world):
    stub = ingest_pb2_grpc.IngestStub(world["channel"])
    for value in (math.nan, math.inf, -math.inf):
        with pytest.raises(grpc.RpcError) as info:
            stub.Poll(ingest_pb2.PollRequest(replay_path=world["empty_dir"], timeout_seconds=value), timeout=30)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "timeout_seconds" in info.value.details()


def test_corrupt_object_at_a_batch_key_is_a_clear_error_not_internal(world):
    enrich = enrichment_pb2_grpc.EnrichmentStub(world["channel"])
    features = features_pb2_grpc.FeaturesStub(world["channel"])
    corrupt = world["keys"][3]
    for call in (lambda: enrich.Enrich(enrichment_pb2.EnrichRequest(alerts_key=corrupt), timeout=30),
                 lambda: features.ComputeFeatures(features_pb2.ComputeFeaturesRequest(alerts_key=corrupt), timeout=30)):
        code, details = outcome(call)
        assert code == grpc.StatusCode.FAILED_PRECONDITION
        assert corrupt in details and "not a readable parquet file" in details


def test_requests_over_the_configured_size_are_refused_and_the_server_goes_on(world):
    stub = enrichment_pb2_grpc.EnrichmentStub(world["channel"])
    with pytest.raises(grpc.RpcError) as info:
        stub.Enrich(enrichment_pb2.EnrichRequest(alerts_key="a" * (MAX_MB << 20)), timeout=30)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    inference = inference_pb2_grpc.InferenceStub(world["channel"])
    with pytest.raises(grpc.RpcError) as info:
        inference.ScoreAlerts(inference_pb2.ScoreAlertsRequest(packets=[b"\0" * (600 << 10)] * 2), timeout=30)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert_still_serving(world)


def test_an_error_quoting_a_huge_request_is_cut_short_not_lost(world):
    """Unbounded, the message would exceed the client's 16 KiB metadata limit and arrive as RESOURCE_EXHAUSTED."""
    stub = features_pb2_grpc.FeaturesStub(world["channel"])
    with pytest.raises(grpc.RpcError) as info:
        stub.ComputeFeatures(features_pb2.ComputeFeaturesRequest(alerts_key="a" * (MAX_MB << 19)), timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not a batch key" in info.value.details() and len(info.value.details()) < 3000


def test_skysift_serve_takes_the_limit_from_the_environment(tmp_path):
    env = {"SKYSIFT_STORE_URL": str(tmp_path / "store"), "SKYSIFT_GRPC_MAX_MESSAGE_MB": "1",
           "SKYSIFT_LOG_LEVEL": "WARNING"}
    proc = servers.start_service("features", env, tmp_path)
    try:
        with servers.channel(proc.port) as channel:
            stub = features_pb2_grpc.FeaturesStub(channel)
            with pytest.raises(grpc.RpcError) as big:
                stub.ComputeFeatures(features_pb2.ComputeFeaturesRequest(alerts_key="a" * (1 << 20)), timeout=30)
            with pytest.raises(grpc.RpcError) as small:
                stub.ComputeFeatures(features_pb2.ComputeFeaturesRequest(alerts_key="a" * 1000), timeout=30)
        assert big.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert small.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # under the limit: read, then refused as a key
    finally:
        proc.stop()
