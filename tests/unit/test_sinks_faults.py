"""SkyPortal misbehaving while the sinks run (what tests/unit/test_sinks.py leaves out): a 429 then a 500 before
success, a request that times out before a good one, and a SkyPortal that never answers. Retries deliver the
annotation once; what still fails is a report naming the cause, never an exception, and never the token.

The timeouts are real: the sink talks to SkyPortal through a loopback relay whose first link (or every link)
goes to a socket that accepts connections and never answers.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest

from skysift.inference.sinks import run_sinks
from skysift.inference.sinks.skyportal import SkyPortalSink
from tests.determinism import scaled
from tests.integration.test_faults_ingest import Relay
from tests.unit.test_sinks import real, scored_rows, skyportal, skyportal_settings  # noqa: F401 - fixtures

TIMEOUT_S = scaled(0.5)


def sink(settings, attempts: int = 3) -> SkyPortalSink:
    return SkyPortalSink(settings.model_copy(update={"timeout_seconds": TIMEOUT_S}), attempts=attempts, backoff=0.01)


@pytest.fixture
def silent_port():
    """A port whose connections are accepted by the kernel and never answered."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    yield listener.getsockname()[1]
    listener.close()


def via_relay(settings, relay: Relay):
    return settings.model_copy(update={"url": f"http://127.0.0.1:{relay.port}"})


def test_skyportal_answering_429_then_500_then_success_is_annotated_once(real, skyportal):  # noqa: F811
    skyportal.fail_next(429, 500)
    (report,) = run_sinks([sink(skyportal_settings(skyportal))], scored_rows(real, [0]))
    assert report.ok, report.detail
    assert [(r.method, r.status) for r in skyportal.requests] == [("POST", 429), ("POST", 500), ("POST", 200)]
    assert len(skyportal.annotations) == 1


def test_skyportal_timing_out_once_then_answering_is_annotated(real, skyportal, silent_port):  # noqa: F811
    relay = Relay(silent_port)  # the first link goes to the silent socket; the next ones to SkyPortal
    stop = threading.Event()

    def send_later_links_to_skyportal():
        deadline = time.monotonic() + 30
        while not relay._links and not stop.is_set() and time.monotonic() < deadline:
            time.sleep(0.005)
        relay.target = int(skyportal.url.rsplit(":", 1)[1])

    switch = threading.Thread(target=send_later_links_to_skyportal, daemon=True)
    switch.start()
    try:
        (report,) = run_sinks([sink(via_relay(skyportal_settings(skyportal), relay))], scored_rows(real, [0]))
    finally:
        stop.set()
        switch.join(5)
        relay.down()
    assert report.ok, report.detail
    assert [(r.method, r.status) for r in skyportal.requests] == [("POST", 200)]  # the timed-out one never arrived
    assert len(skyportal.annotations) == 1


def test_skyportal_never_answering_is_a_reported_failure_without_the_token(real, skyportal, silent_port):  # noqa: F811
    relay = Relay(silent_port)
    settings = via_relay(skyportal_settings(skyportal), relay)
    try:
        (report,) = run_sinks([sink(settings, attempts=2)], scored_rows(real, [0]))
    finally:
        relay.down()
    assert not report.ok
    assert "failed 2 times" in report.detail and "Timeout" in report.detail
    assert settings.token.get_secret_value() not in report.detail
