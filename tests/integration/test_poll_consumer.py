"""The ingest pod's `poller` container (chart: services.ingest.consumer): `skysift poll --every` starts beside its
ingest server, usually before the server serves, and must wait for it instead of failing its first poll."""

from __future__ import annotations

import os
import socket
import subprocess

from tests import servers
from tests.determinism import scaled


def test_poller_started_before_its_ingest_server_waits_for_it(tmp_path):
    port = servers.free_port()
    (tmp_path / "night").mkdir()  # nothing to replay: one empty poll, then --drain ends the loop
    env = {**os.environ, "SKYSIFT_STORE_URL": str(tmp_path / "store"), "SKYSIFT_SECRETS_DIR": str(tmp_path / "none"),
           "SKYSIFT_INGEST_ADDRESS": f"127.0.0.1:{port}", "SKYSIFT_LOG_JSON": "false",
           "SKYSIFT_INGEST_REPLAY_ROOT": str(tmp_path)}
    poller = subprocess.Popen([str(servers.VENV_BIN / "skysift"), "poll", "--every", "0s", "--drain", "--from",
                               str(tmp_path / "night")], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    server = None
    try:
        with socket.create_server(("127.0.0.1", port)) as listener:  # stands in for the server until it is asked
            listener.settimeout(scaled(60))
            listener.accept()[0].close()  # the poller's first health check: it has started and is waiting
        assert poller.poll() is None, poller.communicate()  # without the wait it would have failed its poll
        server = servers.Proc(servers.spawn(
            [str(servers.VENV_BIN / "skysift"), "serve", "ingest", "--port", str(port), "--metrics-port", "0"],
            tmp_path / "ingest.log", env=env), port)
        out, err = poller.communicate(timeout=120)
    finally:
        if poller.poll() is None:
            poller.kill()
            poller.wait(5)
        if server is not None:
            server.stop()
    assert poller.returncode == 0, err[-2000:]
    assert out.splitlines()[0].startswith("polled 0 messages")
