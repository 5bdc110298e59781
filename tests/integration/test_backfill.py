"""The chart's backfill Job, one index run for real: the container's own command and environment (ConfigMap and
Job env), a local store in place of S3, real ZTF packets as two archived nights. The index replays its night
through every stage in one process, a few alerts per poll, until the night is read to its end, then exits."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq

from skysift.alerts.decode import decode_packets
from tests import helm
from tests.app_support import ZTF_AVRO

NIGHTS = {"20240501": ZTF_AVRO[:3], "20240502": ZTF_AVRO[3:6]}


def candids(files: list[Path]) -> set[int]:
    (table,) = decode_packets([f.read_bytes() for f in files]).alerts.values()
    return set(table["candid"].to_pylist())


def test_one_index_replays_its_own_night_to_the_end_and_exits(tmp_path, empty_mlflow_uri):
    archive = tmp_path / "archive"
    for night, files in NIGHTS.items():
        (archive / night).mkdir(parents=True)
        for f in files:
            shutil.copy(f, archive / night / f.name)
    objs = helm.objects({"backfill": {"enabled": True, "nights": list(NIGHTS), "maxAlerts": 2,
                                      "archive": {"existingClaim": "archive", "mountPath": str(archive)}}})
    config_map = next(d for d in objs if d["kind"] == "ConfigMap")["data"]
    job = next(d for d in objs if d["kind"] == "Job")
    container = job["spec"]["template"]["spec"]["containers"][0]
    env = {**config_map, **{e["name"]: e["value"] for e in container["env"]},
           "JOB_COMPLETION_INDEX": "1",  # set by Kubernetes in an indexed Job's pods
           "SKYSIFT_STORE_URL": str(tmp_path / "store"),  # the local store and MLflow stand in for S3 and the server
           "SKYSIFT_MLFLOW_TRACKING_URI": empty_mlflow_uri,
           "SKYSIFT_SECRETS_DIR": str(tmp_path / "no-secrets"), "HOME": str(tmp_path),
           "MPLCONFIGDIR": str(tmp_path / "mpl"), "SKYSIFT_LOG_JSON": "false",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(container["command"] + container["args"], env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    polls = [line for line in done.stdout.splitlines() if line.startswith("polled ")]
    assert polls[0].startswith("polled 2 messages") and polls[-1].startswith("polled 0 messages")
    written = set()
    for path in (tmp_path / "store" / "alerts").rglob("*_alerts.parquet"):
        written |= set(pq.read_table(path, columns=["candid"])["candid"].to_pylist())
    assert written == candids(NIGHTS["20240502"])
    assert len(list((tmp_path / "store" / "features").rglob("*.parquet"))) == len(polls) - 1  # every stage ran
