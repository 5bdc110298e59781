"""Secrets never show in logs, error messages, MLflow or the app's pages. Known secret values are set (S3 keys,
Kafka SASL password, Lasair and SkyPortal tokens, Slack webhook and bot token, the app's password, the gRPC token):

- the services and a poll run through their failure paths, and every log line and message is scanned;
- a round (with a model) runs in that environment on S3 and the real MLflow server, and its run's params, tags,
  text artifacts, logged model and registered version are scanned;
- every page of the Streamlit app (AppTest) is rendered in that environment after signing in with the password,
  against the trainer and MLflow holding that round, and every element's text is scanned.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import grpc
import pytest

from skysift.v1 import enrichment_pb2, enrichment_pb2_grpc, ingest_pb2, ingest_pb2_grpc
from tests import servers
from tests.fakes.lasair import FakeLasair
from tests.fink_parquet import load_fink_alerts

ALERTS_KEY = "alerts/survey=ztf/night=20240601/20240601_120000_alerts.parquet"


@pytest.fixture(scope="module")
def secrets():
    def secret(what: str) -> str:
        return f"{what}-secret-{uuid.uuid4().hex}"

    return {"SKYSIFT_S3_SECRET_ACCESS_KEY": servers.S3_SECRET_KEY, "SKYSIFT_KAFKA_SASL_PASSWORD": secret("kafka"),
            "SKYSIFT_ENRICHMENT_LASAIR_TOKEN": secret("lasair"), "SKYSIFT_SKYPORTAL_TOKEN": secret("skyportal"),
            "SKYSIFT_SLACK_WEBHOOK_URL": f"https://hooks.slack.com/services/T0/B0/{secret('webhook')}",
            "SKYSIFT_SLACK_BOT_TOKEN": f"xoxb-{secret('slack')}", "SKYSIFT_APP_PASSWORD": secret("app"),
            "SKYSIFT_AUTH_TOKEN": servers.TOKENS["operator"]}  # the gRPC bearer token every call here sends


def leaks(text: str, secrets: dict) -> list[str]:
    """Names of the secrets found in ``text``, whole or (for a URL) its path: what HTTP libraries log of it."""
    from urllib.parse import urlsplit

    return [name for name, value in secrets.items()
            if value in text or ("://" in value and urlsplit(value).path.rsplit("/", 1)[-1] in text)]


def test_services_and_a_poll_never_show_a_secret(kafka, s3_server, s3_settings, secrets, tmp_path):
    from skysift.store import open_store

    open_store(settings=s3_settings).write_table(ALERTS_KEY, load_fink_alerts()[0].slice(0, 6))
    lasair = FakeLasair(token=secrets["SKYSIFT_ENRICHMENT_LASAIR_TOKEN"]).start()
    lasair.fail_next(*["500", "429:0"] * 20)  # every call fails: the error paths run with the token in use
    env = {**s3_server.env, **secrets, "SKYSIFT_STORE_URL": s3_settings.store_url, "SKYSIFT_LOG_LEVEL": "DEBUG",
           "SKYSIFT_INGEST_SOURCE": "kafka", "SKYSIFT_KAFKA_BOOTSTRAP_SERVERS": kafka.env["bootstrap.servers"],
           "SKYSIFT_KAFKA_TOPICS": "secrets", "SKYSIFT_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
           "SKYSIFT_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "SKYSIFT_KAFKA_SASL_USERNAME": "skysift",
           "SKYSIFT_INGEST_TIMEOUT_S": "1", "SKYSIFT_ENRICHMENT_LASAIR_URLS": json.dumps({"ztf": lasair.url}),
           "SKYSIFT_ENRICHMENT_TIMEOUT_SECONDS": "2", "SKYSIFT_ENRICHMENT_BACKOFF_SECONDS": "0.01"}  # retries, not waits
    started = servers.start_services(["ingest", "enrichment"], env, tmp_path)
    ingest, enrichment = started["ingest"], started["enrichment"]
    messages = []
    try:
        with servers.channel(ingest.port) as channel:
            with pytest.raises(grpc.RpcError) as failed:
                ingest_pb2_grpc.IngestStub(channel).Poll(ingest_pb2.PollRequest(), timeout=60)
            messages.append(failed.value.details())
        with servers.channel(enrichment.port) as channel:
            resp = enrichment_pb2_grpc.EnrichmentStub(channel).Enrich(enrichment_pb2.EnrichRequest(alerts_key=ALERTS_KEY),
                                                                     timeout=60)
            messages.append(str(resp))
        poll = subprocess.run([sys.executable, "-m", "skysift.cli", "poll"], capture_output=True, text=True, timeout=120,
                              env={**env, **ingest.env, **enrichment.env}, check=False)
        messages += [poll.stdout, poll.stderr]
        check = subprocess.run([sys.executable, "-m", "skysift.cli", "config", "check"], capture_output=True, text=True,
                               timeout=60, env=env, check=False)
        messages += [check.stdout, check.stderr]
    finally:
        ingest.stop()
        enrichment.stop()
        lasair.stop()

    assert poll.returncode != 0 and "poll failed" in poll.stderr  # the failure path did run
    assert set(resp.status_counts) - {"ok", "cached"}, "Lasair was never failed: the error path did not run"
    logs = ingest.log_path.read_text() + enrichment.log_path.read_text()
    assert logs.count("\n") > 5
    assert leaks(logs, secrets) == [], "secret in a service log"
    assert leaks("\n".join(messages), secrets) == [], "secret in an error message or command output"


@pytest.fixture(scope="module")
def round_with_secrets(s3_server, mlflow_server, secrets, tmp_path_factory):
    """A trainer service (`skysift serve trainer`) logging at DEBUG with every secret in its environment, on S3 and
    MLflow, and `skysift round` run through it over real labelled alerts: the command's output and the service's
    log (where the round's MLflow, S3 and HTTP clients log) are kept for scanning; the app uses the same service."""
    import json

    from skysift import config
    from skysift.store import keys, open_store
    from skysift.trainer.datasets import DatasetRequest, Datasets
    from skysift.trainer.labels import LabelEvent, LabelStore
    from tests.app_support import labelling_batch, oracle_labels

    work = tmp_path_factory.mktemp("secrets-round")
    env = {**s3_server.env, **mlflow_server.env, **secrets, "SKYSIFT_STORE_URL": f"s3://t-{uuid.uuid4().hex[:12]}/skysift",
           "SKYSIFT_SECRETS_DIR": str(work / "none"), "SKYSIFT_APP_USER": "", "SKYSIFT_TRAINER_PERMUTATION_REPEATS": "1"}
    with pytest.MonkeyPatch.context() as mp:
        for name, value in env.items():
            mp.setenv(name, value)
        settings = config.load()
        store = open_store(settings=settings)
        store.ensure_bucket()
        alerts_key, table = labelling_batch(store, settings)
        LabelStore(store).submit([LabelEvent(candid=c, label=label, user="oracle", source="oracle")
                                  for c, label in oracle_labels(table).items()])
        Datasets(settings, store).collect(DatasetRequest(name="secrets-dataset"))
        trainer = servers.start_service("trainer", {**env, "SKYSIFT_LOG_LEVEL": "DEBUG"}, work)
    try:
        cli = subprocess.run([sys.executable, "-m", "skysift.cli", "round", "--experiment", "secrets", "--param", "lr=0.2"],
                             env={**servers.inherited_env(), **env, **trainer.env}, capture_output=True, text=True,
                             timeout=600, check=False)
        assert cli.returncode == 0, cli.stdout + cli.stderr
        assert '"level": "DEBUG"' in trainer.log_path.read_text()  # the round ran at DEBUG: the scan sees those lines
        meta = json.loads(store.get_bytes("rounds/secrets/round=000/meta.json"))
        yield {"env": {**env, **trainer.env}, "cli": cli.stdout + cli.stderr, "trainer_log": trainer.log_path,
               "features_key": str(keys.parse_batch(alerts_key).sibling("features")),
               "result": meta["result"], "uri": mlflow_server.env["SKYSIFT_MLFLOW_TRACKING_URI"]}
    finally:
        trainer.stop()


def test_inference_and_every_sink_at_debug_never_show_a_secret(round_with_secrets, secrets, tmp_path):
    """The inference service scores with the round's champion and sends to SkyPortal, Slack (its webhook, or its
    Web API with the bot token, plot included) and the CSV, logging at DEBUG: neither its log nor the answers hold
    a secret (urllib3 logged the webhook's path before). One service per Slack path, started together (their
    start-ups and model loads overlap)."""
    from skysift.rpc.channels import channel
    from skysift.v1 import inference_pb2, inference_pb2_grpc
    from tests.fakes.skyportal import FakeSkyPortal
    from tests.fakes.slack import FakeSlack

    slacks, skyportals, services, seen = {}, {}, {}, {}
    try:
        for slack_by in ("webhook", "bot"):
            slack = slacks[slack_by] = FakeSlack(webhook_path=f"/services/T0/B0/{uuid.uuid4().hex}",
                                                 bot_token=secrets["SKYSIFT_SLACK_BOT_TOKEN"]).start()
            skyportal = skyportals[slack_by] = FakeSkyPortal(tokens={secrets["SKYSIFT_SKYPORTAL_TOKEN"]: ([7], True)}).start()
            by_bot = {"SKYSIFT_SLACK_CHANNEL": slack.channels[0], "SKYSIFT_SLACK_API_URL": slack.api_url} if slack_by == "bot" else {}
            (work := tmp_path / slack_by).mkdir()
            env = {**round_with_secrets["env"], **secrets, **by_bot, "SKYSIFT_SLACK_WEBHOOK_URL": slack.webhook_url,
                   "SKYSIFT_LOG_LEVEL": "DEBUG", "SKYSIFT_SLACK_THRESHOLD": "0", "SKYSIFT_SKYPORTAL_URL": skyportal.url,
                   "SKYSIFT_SKYPORTAL_GROUP_IDS": "7", "SKYSIFT_CSV_PATH": str(work / "predictions.csv")}
            services[slack_by] = servers.spawn_service("inference", env, work)
        servers.wait_listening(*services.values())
        for slack_by, inference in services.items():
            with channel(f"127.0.0.1:{inference.port}") as ch:
                resp = inference_pb2_grpc.InferenceStub(ch).Score(
                    inference_pb2.ScoreRequest(features_key=round_with_secrets["features_key"], model_tags=["galactic"]),
                    timeout=120)
            seen[slack_by] = {"secrets": {**secrets, "SKYSIFT_SLACK_WEBHOOK_URL": slacks[slack_by].webhook_url},
                              "answer": str(resp)}
    finally:
        for fake in [*services.values(), *slacks.values(), *skyportals.values()]:
            fake.stop()
    for slack_by, inference in services.items():
        slack, scan = slacks[slack_by], seen[slack_by]
        # every sink really ran with its secret in use (the CSV is rotated by day: predictions_<date>.csv)
        assert slack.messages and skyportals[slack_by].annotations, slack_by
        assert next((tmp_path / slack_by).glob("predictions_*.csv")).read_text().count("\n") > 1, slack_by
        assert bool(slack.shared) == (slack_by == "bot")  # the bot path ran to its plot upload; the webhook has none
        assert leaks(inference.log_path.read_text(), scan["secrets"]) == [], f"secret in the {slack_by} service's log"
        assert leaks(scan["answer"], scan["secrets"]) == [], f"secret in the {slack_by} service's Score answer"


def text_files(root) -> str:
    from pathlib import Path

    return "\n".join(p.read_text(errors="replace") for p in sorted(Path(root).rglob("*"))
                     if p.is_file() and p.suffix not in (".png", ".pkl", ".skops"))


def test_a_round_logs_no_secret_to_mlflow(round_with_secrets, secrets, tmp_path, mlflow_prefix):
    import mlflow
    from mlflow import MlflowClient

    result, uri = round_with_secrets["result"], round_with_secrets["uri"]
    assert result["model_version"], result["message"]  # a model was logged and registered: every path ran
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(result["mlflow_run_id"])
    name = f"{mlflow_prefix}_galactic"  # the module's own registered model
    version = client.get_model_version(name, result["model_version"])
    mlflow.set_tracking_uri(uri)
    logged = [mlflow.artifacts.download_artifacts(run_id=run.info.run_id, dst_path=str(tmp_path / "run")),
              mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{version.version}",
                                                  dst_path=str(tmp_path / "model"))]
    scanned = {"params": str(run.data.params), "tags": str(run.data.tags), "version tags": str(version.tags),
               "artifacts": "\n".join(text_files(path) for path in logged), "command output": round_with_secrets["cli"],
               "trainer's DEBUG log": round_with_secrets["trainer_log"].read_text()}
    assert run.data.params["learning_rate"] == "0.2" and "candid" in scanned["artifacts"]  # the scan sees content
    assert {where: leaks(text, secrets) for where, text in scanned.items()} == {where: [] for where in scanned}


def page_text(at) -> str:
    """Every element's content (its protobuf: text, markdown, tables' cells, widgets' labels and options)."""
    return "\n".join(str(node.proto) for node in at._tree if getattr(node, "proto", None) is not None)


def test_no_page_of_the_app_shows_a_secret(round_with_secrets, secrets, monkeypatch):
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from tests.app_support import APP

    for name, value in round_with_secrets["env"].items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("SKYSIFT_APP_EXPERIMENT", "secrets")
    st.cache_resource.clear()
    st.cache_data.clear()
    at = AppTest.from_file(str(APP), default_timeout=120).run()
    pages = {"login": page_text(at)}
    at.text_input[0].input("reviewer")
    at.text_input[1].input(secrets["SKYSIFT_APP_PASSWORD"])
    at.button[0].click().run()
    for page in ("views/label.py", "views/rounds.py", "views/datasets.py"):
        at.switch_page(page).run()
        assert not at.exception, (page, at.exception)
        pages[page] = page_text(at)
    st.cache_resource.clear()
    st.cache_data.clear()
    # the pages drew real content: an alert of the queue, the round's artifacts, the dataset
    assert "candid" in pages["views/label.py"] and "Permutation importance" in pages["views/rounds.py"]
    assert "secrets-dataset" in pages["views/datasets.py"]
    assert {page: leaks(text, secrets) for page, text in pages.items()} == {page: [] for page in pages}
