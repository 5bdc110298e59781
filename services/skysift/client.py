"""A small Python client of skysift's Inference service, meant to be copied into your own code.

It needs only ``grpcio``, ``grpcio-health-checking`` and the generated ``skysift.v1`` modules (or your own, from
``protos/skysift/v1/*.proto``)::

    from skysift.client import InferenceClient

    with InferenceClient("127.0.0.1:50054") as client:
        client.wait_ready()
        for p in client.score_candids([2495515172015010006]):
            print(p["candid"], p["objectId"], p["model_name"], p["model_version"], p["probabilities"])
        rows = client.score_packets([open("alert.avro", "rb").read()])
        for p in client.stream("features/survey=ztf/night=20250101/20250101_120000_features.parquet"):
            ...

Each prediction is a plain dict; ``probabilities`` keeps the model's pre-order (parents before children) and
``parents`` maps each class to its parent ("" at the top). The scoring calls ask for the packed form (one
``PackedPredictions`` per model, rows as columns: much less to build, send and parse than one message per alert)
and turn it into those dicts; for numpy, read ``resp.packed[i].probabilities`` (row-major, ``len(classes)`` a
row) from ``client.stub`` directly. Errors arrive as ``grpc.RpcError`` with the server's
status (FAILED_PRECONDITION when there is no model yet, NOT_FOUND for unknown candids, ...). From a shell,
grpcurl works through reflection: ``grpcurl -plaintext 127.0.0.1:50054 list``.

Every call but health needs a token with the ``scorer`` (or ``operator``) role: pass ``token=``, or set
``SKYSIFT_AUTH_TOKEN``, or ``SKYSIFT_AUTH_TOKEN_FILE`` naming a file that holds it (a mounted Secret);
UNAUTHENTICATED or PERMISSION_DENIED otherwise. For TLS pass ``root_certificates`` (PEM bytes of the CA).
"""

from __future__ import annotations

import collections
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from skysift.v1 import inference_pb2, inference_pb2_grpc

SERVICE = "skysift.v1.Inference"


def prediction_dict(p: inference_pb2.Prediction) -> dict:
    """One per-alert Prediction (the default form, and what StreamScores sends) as a dict."""
    return {
        "candid": p.candid,
        "objectId": p.object_id,
        "model_tag": p.model_tag,
        "model_name": p.model_name,
        "model_version": p.model_version,
        "feature_set_version": p.feature_set_version,
        "probabilities": {c.label: c.probability for c in p.probabilities},
        "parents": {c.label: c.parent for c in p.probabilities},
    }


def packed_dicts(block: inference_pb2.PackedPredictions) -> list[dict]:
    """The rows of one PackedPredictions, as the same dicts as :func:`prediction_dict` gives."""
    classes = list(block.classes)
    parents = dict(zip(classes, block.parents))
    tag, name, version, fsv = block.model_tag, block.model_name, block.model_version, block.feature_set_version
    rows = zip(*[iter(list(block.probabilities))] * len(classes))  # row-major → one tuple per row
    return [{"candid": candid, "objectId": object_id, "model_tag": tag, "model_name": name, "model_version": version,
             "feature_set_version": fsv, "probabilities": dict(zip(classes, row)), "parents": parents.copy()}
            for candid, object_id, row in zip(block.candids, block.object_ids, rows)]


def response_dicts(resp: inference_pb2.ScoreResponse) -> list[dict]:
    """Every prediction of a ScoreResponse in either form (a server that predates ``packed`` answers per alert)."""
    return [prediction_dict(p) for p in resp.predictions] + [d for b in resp.packed for d in packed_dicts(b)]


class _Details(collections.namedtuple("_Details", ("method", "timeout", "metadata", "credentials",
                                                     "wait_for_ready", "compression")), grpc.ClientCallDetails):
    pass


class BearerToken(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    """Adds ``authorization: Bearer <token>`` to every call of a channel (plaintext or TLS alike)."""

    def __init__(self, token: str):
        self._header = ("authorization", f"Bearer {token}")

    def _with_token(self, details):
        metadata = [*(details.metadata or ()), self._header]
        return _Details(details.method, details.timeout, metadata, details.credentials, details.wait_for_ready,
                        details.compression)

    def intercept_unary_unary(self, continuation, client_call_details, request):
        return continuation(self._with_token(client_call_details), request)

    def intercept_unary_stream(self, continuation, client_call_details, request):
        return continuation(self._with_token(client_call_details), request)

    def __repr__(self) -> str:  # never the token
        return "BearerToken(***)"


def token_from_environment() -> str | None:
    """SKYSIFT_AUTH_TOKEN, else the file SKYSIFT_AUTH_TOKEN_FILE names, else the mounted secret
    ``$SKYSIFT_SECRETS_DIR/SKYSIFT_AUTH_TOKEN`` (the layout skysift's own settings read)."""
    if os.environ.get("SKYSIFT_AUTH_TOKEN", "").strip():
        return os.environ["SKYSIFT_AUTH_TOKEN"].strip()
    mounted = Path(os.environ.get("SKYSIFT_SECRETS_DIR", "/var/run/secrets/skysift")) / "SKYSIFT_AUTH_TOKEN"
    path = os.environ.get("SKYSIFT_AUTH_TOKEN_FILE") or (str(mounted) if mounted.is_file() else None)
    return (Path(path).read_text().strip() or None) if path else None


class InferenceClient:
    def __init__(self, address: str, timeout: float = 60.0, max_message_mb: int = 64, token: str | None = None,
                 root_certificates: bytes | None = None):
        size = max_message_mb * 1024 * 1024
        options = [("grpc.max_receive_message_length", size), ("grpc.max_send_message_length", size)]
        channel = (grpc.insecure_channel(address, options=options) if root_certificates is None else
                   grpc.secure_channel(address, grpc.ssl_channel_credentials(root_certificates), options=options))
        token = token or token_from_environment()
        self.channel = grpc.intercept_channel(channel, BearerToken(token)) if token else channel
        self.stub = inference_pb2_grpc.InferenceStub(self.channel)  # every call through it sends the token
        self.timeout = timeout

    def __enter__(self) -> InferenceClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.channel.close()

    # -- health -----------------------------------------------------------------------------------------------
    def health(self, service: str = SERVICE, timeout: float = 2.0) -> str:
        """SERVING, NOT_SERVING, ... from grpc.health.v1, or UNREACHABLE."""
        try:
            resp = health_pb2_grpc.HealthStub(self.channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        except grpc.RpcError:
            return "UNREACHABLE"
        return health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while self.health() != "SERVING":
            if time.monotonic() > deadline:
                raise TimeoutError(f"{SERVICE} not SERVING after {timeout:.0f}s")
            time.sleep(0.2)

    # -- scoring ----------------------------------------------------------------------------------------------
    def score_key(self, features_key: str, model_tags: Iterable[str] = (), write: bool = True) -> list[dict]:
        """Score a stored features batch (written to predictions/ unless ``write`` is False)."""
        resp = self.stub.Score(inference_pb2.ScoreRequest(
            features_key=features_key, model_tags=list(model_tags), skip_write=not write, packed=True), timeout=self.timeout)
        return response_dicts(resp)

    def score_candids(self, candids: Iterable[int], model_tags: Iterable[str] = ()) -> list[dict]:
        resp = self.stub.ScoreCandids(inference_pb2.ScoreCandidsRequest(
            candids=list(candids), model_tags=list(model_tags), packed=True), timeout=self.timeout)
        return response_dicts(resp)

    def score_packets(self, packets: Iterable[bytes], format: str = "auto", schema_json: str = "",
                      model_tags: Iterable[str] = (), enrich: bool = False) -> list[dict]:
        """Score raw alert packets: Avro container files, Confluent-framed Rubin alerts, or Fink schemaless Avro
        (``format="schemaless"`` with the schema JSON from the Kafka key)."""
        resp = self.stub.ScoreAlerts(inference_pb2.ScoreAlertsRequest(
            packets=list(packets), format=format, schema_json=schema_json, model_tags=list(model_tags),
            enrich=enrich, packed=True), timeout=self.timeout)
        return response_dicts(resp)

    def stream(self, features_key: str, model_tags: Iterable[str] = (), write: bool = False) -> Iterator[dict]:
        """Predictions of a large features batch, one at a time as they arrive."""
        for p in self.stub.StreamScores(inference_pb2.ScoreRequest(
                features_key=features_key, model_tags=list(model_tags), skip_write=not write), timeout=self.timeout):
            yield prediction_dict(p)

    def models(self) -> list[dict]:
        """The champion models being served: tag, name, version, feature-set version, classes."""
        resp = self.stub.ListModels(inference_pb2.ListModelsRequest(), timeout=self.timeout)
        return [{"model_tag": m.model_tag, "model_name": m.model_name, "model_version": m.model_version,
                 "feature_set_version": m.feature_set_version, "classes": list(m.classes)} for m in resp.models]
