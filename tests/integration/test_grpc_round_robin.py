"""Two replicas of a stage behind one target share one poll's calls (the chart's headless Services + round_robin).

In the cluster a `dns:///<service>:<port>` target resolves to every ready pod of a headless Service; here an
`ipv4:` target lists two real servers on loopback, which gRPC resolves and balances the same way.
"""

from __future__ import annotations

import shutil
from contextlib import ExitStack

import pytest

from skysift import config, pipeline
from skysift.enrichment.service import EnrichmentServicer
from skysift.features.service import FeaturesServicer
from skysift.inference import service as inference_service
from skysift.ingest import service as ingest_service
from skysift.rpc import server
from skysift.v1 import enrichment_pb2_grpc, features_pb2_grpc
from tests import alert_packets as ap


def counting(servicer_cls: type, method: str) -> type:
    """The real servicer, counting the calls of ``method`` it answers."""

    def counted(self, request, context):
        self.calls += 1
        return getattr(servicer_cls, method)(self, request, context)

    return type(f"Counting{servicer_cls.__name__}", (servicer_cls,), {"calls": 0, method: counted})


@pytest.fixture
def replay(tmp_path, monkeypatch, empty_mlflow_uri):
    """Two ZTF and two Rubin packets: one poll makes an alert batch per survey and night, each a call to each stage."""
    packets = tmp_path / "packets"
    packets.mkdir()
    for path in ap.FINK_CONTAINERS[:2] + ap.RUBIN_V9[:2]:
        shutil.copy(path, packets / path.name)
    monkeypatch.setenv("SKYSIFT_INGEST_REPLAY_ROOT", str(tmp_path))
    monkeypatch.setenv("SKYSIFT_MLFLOW_TRACKING_URI", empty_mlflow_uri)  # no model: scores nothing
    return packets


def test_two_replicas_of_a_stage_both_receive_calls_of_one_poll(replay, local_settings, local_store, monkeypatch):
    settings = config.load()
    replicas: dict[str, list] = {"enrichment": [], "features": []}
    with ExitStack() as stack:
        def start(name, register):
            running = server.start(name, register, settings, port=0)
            stack.callback(running.stop, 0)
            return f"127.0.0.1:{running.port}"

        for _ in range(2):
            enrich = counting(EnrichmentServicer, "Enrich")(settings, local_store)
            features = counting(FeaturesServicer, "ComputeFeatures")(settings, local_store)
            replicas["enrichment"].append((enrich, start("enrichment", lambda s, e=enrich: _add(
                enrichment_pb2_grpc.add_EnrichmentServicer_to_server, e, s, "Enrichment"))))
            replicas["features"].append((features, start("features", lambda s, f=features: _add(
                features_pb2_grpc.add_FeaturesServicer_to_server, f, s, "Features"))))
        for stage, replica in replicas.items():  # one target naming both servers, as DNS names a headless Service's pods
            monkeypatch.setenv(f"SKYSIFT_{stage.upper()}_ADDRESS", "ipv4:" + ",".join(address for _, address in replica))
        monkeypatch.setenv("SKYSIFT_INGEST_ADDRESS", start("ingest", lambda s: ingest_service.register(s, settings)))
        monkeypatch.setenv("SKYSIFT_INFERENCE_ADDRESS", start("inference", lambda s: inference_service.register(s, settings)))

        report = pipeline.run_poll(pipeline.GrpcStages(config.load()), replay_path=str(replay))

    batches = len([o for o in report.outcomes if o.stage == "alerts"])
    assert batches >= 2  # one per survey and night
    for stage, replica in replicas.items():
        calls = [servicer.calls for servicer, _ in replica]
        assert sum(calls) == batches and min(calls) >= 1, (stage, calls)  # pick_first would give [batches, 0]


def _add(add_servicer, servicer, grpc_server, name: str) -> list[str]:
    add_servicer(servicer, grpc_server)
    return [f"skysift.v1.{name}"]


def test_servers_close_connections_past_their_age_so_clients_resolve_again(local_settings, monkeypatch):
    """A client re-resolves its target when the server closes the connection: a long-lived channel (the app, a
    consumer's poller) then also reaches replicas added since it connected."""
    import threading

    import grpc

    from skysift.rpc.channels import channel

    monkeypatch.setattr(server, "MAX_CONNECTION_AGE_MS", 300)
    running = server.start("health-only", lambda s: [], local_settings, port=0)
    states, reconnected = [], threading.Event()

    def seen(state):
        states.append(state)
        if state is not grpc.ChannelConnectivity.READY and grpc.ChannelConnectivity.READY in states:
            reconnected.set()

    try:
        with channel(f"127.0.0.1:{running.port}") as ch:
            ch.subscribe(seen, try_to_connect=True)
            grpc.channel_ready_future(ch).result(timeout=10)
            assert reconnected.wait(10), states  # GOAWAY after 300 ms: the channel connects (and resolves) again
            ch.unsubscribe(seen)
    finally:
        running.stop(0)
