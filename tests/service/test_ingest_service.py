"""skysift.v1.Ingest through a real gRPC server on loopback, over a replay of real packets."""

from __future__ import annotations

import shutil

import grpc
import pytest

from skysift.errors import InvalidArgument
from skysift.ingest.service import register
from skysift.rpc import server
from skysift.store import keys
from skysift.v1 import ingest_pb2, ingest_pb2_grpc
from tests import alert_packets as ap
from tests import servers
from tests.servers import free_port


@pytest.fixture
def ingest(local_settings, tmp_path, monkeypatch):
    monkeypatch.setenv("SKYSIFT_INGEST_REPLAY_ROOT", str(tmp_path))
    running = server.start("ingest", lambda s: register(s, local_settings), local_settings, free_port())
    with servers.channel(running.port) as channel:
        yield ingest_pb2_grpc.IngestStub(channel)
    running.stop(0)


def test_poll_replays_packets_into_alerts_and_cutouts(ingest, local_store, tmp_path):
    d = tmp_path / "packets"
    d.mkdir()
    for p in ap.FINK_CONTAINERS[:2] + ap.RUBIN_V9[:2]:
        shutil.copy(p, d / p.name)
    resp = ingest.Poll(ingest_pb2.PollRequest(replay_path=str(d), keep_cutouts=True), timeout=120)
    assert resp.n_messages == 4 and resp.n_dead_letters == 0 and resp.dlq_key == ""
    assert {b.survey for b in resp.alerts} == {"ztf", "lsst"} == {b.survey for b in resp.cutouts}
    assert resp.n_alerts == sum(b.rows for b in resp.alerts)
    for b in resp.alerts:
        assert keys.parse_batch(b.key, "alerts") and local_store.read_table(b.key).num_rows == b.rows


def test_missing_replay_path_is_invalid_argument(ingest, tmp_path):
    with pytest.raises(grpc.RpcError) as info:
        ingest.Poll(ingest_pb2.PollRequest(replay_path=str(tmp_path / "nowhere")), timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "does not exist" in info.value.details()


def test_unknown_filter_is_invalid_argument(ingest, tmp_path):
    with pytest.raises(grpc.RpcError) as info:
        ingest.Poll(ingest_pb2.PollRequest(replay_path=str(tmp_path), filter="nope"), timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "fink_vra" in info.value.details()


def test_replay_paths_outside_the_replay_root_are_refused(tmp_path):
    from skysift.ingest.settings import IngestSettings

    settings = IngestSettings(replay_root=str(tmp_path / "archive"))
    (tmp_path / "archive" / "night=20250101").mkdir(parents=True)
    assert settings.check_replay_path(str(tmp_path / "archive" / "night=20250101")).endswith("night=20250101")
    with pytest.raises(InvalidArgument, match="not a usable path"):
        settings.check_replay_path(str(tmp_path / "archive") + "/\x00night")
    for outside in ("/etc", str(tmp_path / "archive" / ".." / "secrets")):
        with pytest.raises(InvalidArgument, match="outside the ingest service's replay root"):
            settings.check_replay_path(outside)
