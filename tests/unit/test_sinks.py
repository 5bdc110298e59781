"""Sinks on real predictions: SkyPortal annotations, the rolling CSV, Slack, and their isolation from each other.

The predictions come from a real HistGradientBoosting model fitted on real alerts' features; SkyPortal and Slack
are local servers that follow their APIs (tests/fakes).
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pyarrow as pa
import pytest
from pydantic import SecretStr

from skysift.inference.core import InferenceStage
from skysift.inference.scoring import score_table
from skysift.inference.settings import (
    CsvSettings,
    InferenceSettings,
    SkyPortalSettings,
    SlackSettings,
)
from skysift.inference.sinks import Scored, run_sinks
from skysift.inference.sinks.csv import CsvSink
from skysift.inference.sinks.skyportal import SkyPortalSink
from skysift.inference.sinks.slack import SlackSink
from tests.fakes.skyportal import FakeSkyPortal
from tests.fakes.slack import FakeSlack
from tests.inference_support import Loaded, in_memory_model, store_batch

GROUPS = [1959]


@pytest.fixture(scope="module")
def real():
    return in_memory_model()


def stage(local_settings, local_store, model, **sinks) -> InferenceStage:
    config = InferenceSettings(model_tags=["galactic"], sink_attempts=3, sink_backoff_seconds=0.01,
                               skyportal=sinks.get("skyportal", SkyPortalSettings()),
                               slack=sinks.get("slack", SlackSettings()), csv=sinks.get("csv", CsvSettings()))
    return InferenceStage(local_settings, local_store, config, registry=Loaded({"galactic": model}))


def scored_rows(real, rows: list[int]) -> Scored:
    alerts, features, model = real
    table = features.take(rows).append_column("objectId", alerts.column("objectId").take(rows))
    models = {"galactic": model}
    return Scored(score_table(table, models), models, None)


@pytest.fixture
def skyportal():
    fake = FakeSkyPortal(tokens={"annotator": (GROUPS + [1], True), "viewer": (GROUPS, False)}).start()
    yield fake
    fake.stop()


@pytest.fixture
def slack():
    fake = FakeSlack().start()
    yield fake
    fake.stop()


def skyportal_settings(fake, token="annotator") -> SkyPortalSettings:
    return SkyPortalSettings(url=fake.url, token=SecretStr(token), group_ids=GROUPS, origin="skysift_test")


def same_source_rows(alerts: pa.Table) -> tuple[int, int]:
    """Two alerts of one source, earlier candid first."""
    seen: dict[str, int] = {}
    candids = alerts.column("candid").to_pylist()
    for i, obj in enumerate(alerts.column("objectId").to_pylist()):
        if obj in seen:
            a, b = seen[obj], i
            return (a, b) if candids[a] < candids[b] else (b, a)
        seen[obj] = i
    raise AssertionError("the test alerts hold no source with two alerts")


def test_skyportal_posts_then_puts_the_second_alert_of_a_source(real, skyportal):
    first, second = same_source_rows(real[0])
    sink = SkyPortalSink(skyportal_settings(skyportal), attempts=2, backoff=0.01)
    sink.send(scored_rows(real, [first]))
    sink.send(scored_rows(real, [second]))
    calls = [(r.method, r.status) for r in skyportal.requests]
    assert calls == [("POST", 200), ("POST", 400), ("GET", 200), ("PUT", 200)]
    posted, put = skyportal.requests[0].body, skyportal.requests[3].body
    assert posted["group_ids"] == GROUPS and put["group_ids"] == GROUPS
    (annotation,) = skyportal.annotations.values()
    assert annotation.group_ids == GROUPS
    assert annotation.data["candid"] == real[0].column("candid")[second].as_py()


def test_skyportal_annotation_is_the_pre_order_walk_with_the_model(real, skyportal):
    sink = SkyPortalSink(skyportal_settings(skyportal), attempts=2, backoff=0.01)
    scored = scored_rows(real, [0])
    sink.send(scored)
    data = skyportal.requests[0].body["data"]
    assert list(data)[1:3] == ["not_galactic", "galactic"]
    assert data["galactic"] == pytest.approx(scored.predictions.column("prob_galactic")[0].as_py(), abs=1e-4)
    assert data["model"] == "skysift_galactic v7"


def test_skyportal_sends_only_the_latest_alert_of_a_source_in_a_batch(real, skyportal):
    first, second = same_source_rows(real[0])
    SkyPortalSink(skyportal_settings(skyportal), attempts=2, backoff=0.01).send(scored_rows(real, [second, first]))
    assert [r.method for r in skyportal.requests] == ["POST"]
    assert skyportal.requests[0].body["data"]["candid"] == real[0].column("candid")[second].as_py()


def test_skyportal_401_is_a_configuration_error(real, skyportal):
    (report,) = run_sinks([SkyPortalSink(skyportal_settings(skyportal, "viewer"), 3, 0.01)], scored_rows(real, [0]))
    assert not report.ok
    assert "SKYSIFT_SKYPORTAL_TOKEN" in report.detail and "Annotate" in report.detail
    assert len(skyportal.requests) == 1  # not retried


def test_skyportal_retries_a_503(real, skyportal):
    skyportal.fail_next(503)
    SkyPortalSink(skyportal_settings(skyportal), attempts=3, backoff=0.01).send(scored_rows(real, [0]))
    assert [(r.method, r.status) for r in skyportal.requests] == [("POST", 503), ("POST", 200)]


def test_skyportal_settings_refuse_a_url_without_group_ids():
    with pytest.raises(ValueError, match="GROUP_IDS"):
        SkyPortalSettings(url="http://x", token=SecretStr("t"))


def test_failing_sink_keeps_parquet_and_other_sinks(real, skyportal, tmp_path, local_settings, local_store):
    alerts, features, model = real
    skyportal.fail_next(*[503] * 3)  # SkyPortal down for every attempt
    csv_path = tmp_path / "results" / "skysift.csv"
    st = stage(local_settings, local_store, model, skyportal=skyportal_settings(skyportal),
               csv=CsvSettings(path=str(csv_path), rotation="none"))
    key = store_batch(local_store, alerts, features)
    result = st.score_batch(key)
    assert local_store.read_table(result.written.key).num_rows == alerts.num_rows
    reports = {r.name: r for r in result.sinks}
    assert not reports["skyportal"].ok and "failed 3 times" in reports["skyportal"].detail
    assert reports["csv"].ok and csv_path.read_text().count("\n") == alerts.num_rows + 1
    assert "skyportal" in result.message


def test_csv_row_per_alert_with_pre_order_probabilities(real, tmp_path):
    sink = CsvSink(CsvSettings(path=str(tmp_path / "out.csv"), rotation="none"))
    scored = scored_rows(real, [0, 1, 2])
    sink.send(scored)
    rows = list(csv.DictReader((tmp_path / "out.csv").read_text().splitlines()))
    assert [int(r["candid"]) for r in rows] == scored.predictions.column("candid").to_pylist()
    assert list(json.loads(rows[0]["probabilities"])) == ["not_galactic", "galactic"]
    assert rows[0]["model_version"] == "7"


def test_csv_rotates_by_size(real, tmp_path):
    sink = CsvSink(CsvSettings(path=str(tmp_path / "out.csv"), rotation="size", max_mb=1e-4))  # ~100 bytes
    sink.send(scored_rows(real, [0, 1]))
    sink.send(scored_rows(real, [2]))
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 2 and "out.csv" in files
    assert len((tmp_path / "out.csv").read_text().splitlines()) == 2  # header + the one new row


def test_csv_rotates_by_day(real, tmp_path):
    sink = CsvSink(CsvSettings(path=str(tmp_path / "out.csv"), rotation="day"))
    detail = sink.send(scored_rows(real, [0]))
    (written,) = tmp_path.iterdir()
    assert written.name.startswith("out_20") and written.name in detail


def test_slack_webhook_lists_only_alerts_above_threshold(real, slack):
    scored = scored_rows(real, list(range(real[0].num_rows)))
    p = np.array(scored.predictions.column("prob_galactic").to_pylist())
    threshold = float(np.quantile(p, 0.9))
    settings = SlackSettings(webhook_url=SecretStr(slack.webhook_url), threshold=threshold, max_alerts=1000)
    SlackSink(settings, 2, 0.01).send(scored)
    (message,) = slack.messages
    assert message["text"].startswith(f"skysift: {(p >= threshold).sum()} alerts above")
    assert message["blocks"][1]["text"]["text"].count("\n") == (p >= threshold).sum() - 1


def test_slack_bot_posts_a_summary_and_a_plot_in_its_thread(real, slack):
    settings = SlackSettings(bot_token=SecretStr(slack.bot_token), channel=slack.channels[0], api_url=slack.api_url,
                             threshold=0.0)
    SlackSink(settings, 2, 0.01).send(scored_rows(real, [0, 1]))
    (message,) = slack.messages
    (share,) = slack.shared
    assert share["channel_id"] == slack.channels[0] and share["thread_ts"]
    assert slack.uploads[share["files"][0]["id"]].startswith(b"\x89PNG")
    assert message["channel"] == slack.channels[0]


def test_slack_rate_limit_is_retried(real, slack):
    slack.fail_next(429)
    settings = SlackSettings(webhook_url=SecretStr(slack.webhook_url), threshold=0.0)
    SlackSink(settings, 3, 0.01).send(scored_rows(real, [0]))
    assert len(slack.messages) == 1


def test_slack_bad_token_is_a_configuration_error(real, slack):
    settings = SlackSettings(bot_token=SecretStr("xoxb-wrong"), channel=slack.channels[0], api_url=slack.api_url,
                             threshold=0.0)
    (report,) = run_sinks([SlackSink(settings, 2, 0.01)], scored_rows(real, [0]))
    assert not report.ok and "invalid_auth" in report.detail and "SKYSIFT_SLACK_BOT_TOKEN" in report.detail
