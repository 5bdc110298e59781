"""The console entry point leaves with os._exit after flushing (skysift.cli.main): the command's exit code and every
line it printed must still reach the caller through a pipe."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SKYSIFT = str(Path(sys.executable).parent / "skysift")


def run(args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SKYSIFT_")}
    return subprocess.run([SKYSIFT, *args], capture_output=True, text=True, timeout=120, check=False,
                          env={**base, "SKYSIFT_STORE_URL": str(tmp_path / "store"), **env})


def test_a_malformed_setting_exits_2_with_its_message(tmp_path):
    done = run(["config", "check"], tmp_path, SKYSIFT_GRPC_WORKERS="many")
    assert done.returncode == 2
    assert "SKYSIFT_GRPC_WORKERS" in done.stderr + done.stdout


def test_a_successful_command_exits_0_with_all_its_output(tmp_path):
    done = run(["--help"], tmp_path)
    assert done.returncode == 0
    assert "Usage: skysift" in done.stdout and "label" in done.stdout  # the last command listed is printed too


def test_a_failed_poll_exits_1_so_a_cronjob_retries(tmp_path, mlflow_server, mlflow_prefix):
    """A runtime failure (the store's S3 endpoint down) is 1; a poll given a path that does not exist is bad input, 2.
    The poll asks MLflow for champions first: the session's server answers at once (a fresh sqlite store would be
    created and migrated by each command, most of this test's time)."""
    from tests.servers import free_port

    mlflow = {"SKYSIFT_MLFLOW_TRACKING_URI": mlflow_server.env["SKYSIFT_MLFLOW_TRACKING_URI"],
              "SKYSIFT_MLFLOW_MODEL_PREFIX": mlflow_prefix}  # the module's own: no champion registered
    demo = str(Path(__file__).resolve().parents[2] / "demo" / "alerts")
    down = run(["poll", "--in-process", "--from", demo], tmp_path, SKYSIFT_STORE_URL="s3://down/store",
               SKYSIFT_S3_ENDPOINT_URL=f"http://127.0.0.1:{free_port()}", SKYSIFT_S3_ACCESS_KEY_ID="test",
               SKYSIFT_S3_SECRET_ACCESS_KEY="test", **mlflow)
    assert down.returncode == 1, down.stderr
    assert "poll failed" in down.stderr + down.stdout
    bad = run(["poll", "--in-process", "--from", str(tmp_path / "no-such-dir")], tmp_path, **mlflow)
    assert bad.returncode == 2 and "does not exist" in bad.stderr, bad.stderr


def test_an_unreachable_kafka_broker_is_one_line_naming_it_and_what_to_check(tmp_path):
    """librdkafka wrote ~190 lines of its own log to stderr for one poll of a closed port (and the kafka offsets
    command as many): the scanner gets one line, the broker's address and the setting to check, and exit 1."""
    from tests.servers import free_port

    broker = f"127.0.0.1:{free_port()}"  # nothing listens there
    kafka = dict(SKYSIFT_INGEST_SOURCE="kafka", SKYSIFT_KAFKA_BOOTSTRAP_SERVERS=broker, SKYSIFT_KAFKA_TOPICS="ztf")
    for args in (["poll", "--in-process", "--timeout", "2s"], ["kafka", "offsets"]):
        done = run(args, tmp_path, **kafka)
        assert done.returncode == 1, done.stderr
        lines = done.stderr.splitlines()
        assert len(lines) == 1, f"{args}: {len(lines)} lines on stderr:\n" + "\n".join(lines[:5])
        assert f"Kafka broker unreachable at {broker}" in lines[0] and "SKYSIFT_KAFKA_BOOTSTRAP_SERVERS" in lines[0]
