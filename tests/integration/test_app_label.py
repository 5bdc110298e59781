"""The label page (AppTest) against a real trainer process, on a store holding real alerts and their features."""

import os
from datetime import UTC, datetime

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from skysift import config
from skysift.app.labelling import UNDO_COMMENT, LabelSession
from skysift.app.trainer import Label, TrainerClient
from skysift.store import open_store
from tests.app_support import (
    APP,
    labelling_batch,
    rubin_packets,
    run_round,
    start_trainer,
)

EXPERIMENT = "label-page"
N = 6


def world_env(tmp_path_factory, mlflow_server, name: str):
    work = tmp_path_factory.mktemp(name)
    return {**os.environ, "SKYSIFT_STORE_URL": str(work / "store"), **mlflow_server.env,
            "SKYSIFT_SECRETS_DIR": str(work / "no-secrets"), "SKYSIFT_LOG_JSON": "false"}, work


def build_world(tmp_path_factory, mlflow_server, name: str, packets=None, when=None):
    env, work = world_env(tmp_path_factory, mlflow_server, name)
    settings = config.Settings(store_url=env["SKYSIFT_STORE_URL"])
    store = open_store(settings=settings)
    _, table = labelling_batch(store, settings, packets, when)
    trainer = start_trainer(work, env)
    env.update(trainer.env)
    queue = run_round(trainer.env["SKYSIFT_TRAINER_ADDRESS"], EXPERIMENT, initial=N)
    return env, store, trainer, table, queue


@pytest.fixture(scope="module")
def world(tmp_path_factory, mlflow_server):
    """A trainer process, a store holding a real ZTF batch (stamps, features) and round 0 of EXPERIMENT."""
    env, store, trainer, table, queue = build_world(tmp_path_factory, mlflow_server, "label")
    yield {"env": env, "store": store, "table": table, "round": queue}
    trainer.stop()


@pytest.fixture
def page(world, monkeypatch, request):
    """A fresh browser session of the app for one labeller (named after the test, so progress is theirs)."""
    user = request.node.name.removeprefix("test_")[:40]
    for name in ("SKYSIFT_STORE_URL", "SKYSIFT_TRAINER_ADDRESS", "SKYSIFT_MLFLOW_TRACKING_URI", "SKYSIFT_SECRETS_DIR"):
        monkeypatch.setenv(name, world["env"][name])
    monkeypatch.setenv("SKYSIFT_APP_USER", user)
    monkeypatch.setenv("SKYSIFT_APP_EXPERIMENT", EXPERIMENT)
    st.cache_resource.clear()
    st.cache_data.clear()
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    assert not at.exception, at.exception
    yield at, user
    st.cache_resource.clear()
    st.cache_data.clear()


def client(world) -> TrainerClient:
    return TrainerClient(config.Settings(trainer_address=world["env"]["SKYSIFT_TRAINER_ADDRESS"]))


def queue_items(world):
    return client(world).queue(EXPERIMENT).items


def events_of(world, user):
    return client(world).labels(history=True, user=user)


def progress(at) -> str:
    return at.get("progress")[0].proto.text


def test_first_queued_alert_is_shown_with_light_curve_stamps_facts_and_links(page, world):
    at, _ = page
    first = queue_items(world)[0]
    assert f"0 of {N} this round" in progress(at)
    assert f"{first.object_id} · candid {first.candid}" in at.subheader[0].value
    captions = [img.captions[0] for img in at.image]
    assert captions[0].startswith("Light curve") and captions[1:] == ["science", "template", "difference"]
    facts = at.dataframe[0].value
    assert str(first.candid) in facts["value"].tolist()
    links = " ".join(m.value for m in at.markdown)
    assert f"https://fink-portal.org/{first.object_id}" in links


def test_label_key_button_submits_through_the_trainer_and_moves_on(page, world):
    at, user = page
    first, second = queue_items(world)[:2]
    at.button(key="label_galactic").click().run()
    assert not at.exception
    events = events_of(world, user)
    assert [(e.candid, e.label, e.source, e.experiment, e.round) for e in events] == [
        (first.candid, "galactic", "human", EXPERIMENT, world["round"].round)]
    assert f"1 of {N} this round" in progress(at)
    assert f"candid {second.candid}" in at.subheader[0].value


def test_label_is_visible_after_a_reload(page, world):
    at, _ = page
    first = queue_items(world)[0]
    at.button(key="label_extragalactic").click().run()
    st.cache_resource.clear()
    again = AppTest.from_file(str(APP), default_timeout=60).run()  # a new session: state comes from the trainer only
    assert f"1 of {N} this round" in progress(again)
    again.button(key="previous").click().run()
    assert f"candid {first.candid} · your label: **extragalactic**" in again.subheader[0].value


def test_undo_takes_the_label_back_and_returns_to_the_alert(page, world):
    at, user = page
    first = queue_items(world)[0]
    at.button(key="label_agn").click().run()
    at.button(key="undo").click().run()
    assert f"0 of {N} this round" in progress(at)
    assert f"candid {first.candid}" in at.subheader[0].value and "your label" not in at.subheader[0].value
    events = events_of(world, user)
    assert [(e.label, e.comment) for e in events] == [("agn", ""), ("skip", UNDO_COMMENT)]


def test_undo_of_a_relabel_restores_the_earlier_label(page, world):
    at, user = page
    at.button(key="label_bogus").click().run()
    at.button(key="previous").click().run()
    at.button(key="label_real").click().run()
    at.button(key="undo").click().run()
    first = queue_items(world)[0]
    latest = {e.candid: e.label for e in events_of(world, user)}
    assert latest[first.candid] == "bogus"
    assert "your label: **bogus**" in at.subheader[0].value


def test_skip_records_that_the_alert_was_seen_and_moves_on(page, world):
    at, user = page
    first, second = queue_items(world)[:2]
    at.button(key="label_skip").click().run()
    assert [(e.candid, e.label) for e in events_of(world, user)] == [(first.candid, "skip")]
    assert f"candid {second.candid}" in at.subheader[0].value


def test_whole_queue_labelled_says_so(page, world):
    at, _ = page
    for _ in range(N):
        at.button(key="label_varstar").click().run()
    assert f"{N} of {N} this round" in progress(at)
    assert f"All {N} alerts of round" in at.success[0].value


def test_double_registered_click_writes_one_event(world):
    session = LabelSession(client(world), "double-clicker", EXPERIMENT, "galactic")
    session.load()
    first = session.current
    assert session.label(first.candid, "galactic") is True
    assert session.label(first.candid, "galactic") is False  # the same click arriving twice
    assert len(events_of(world, "double-clicker")) == 1


def test_labels_of_other_labellers_are_shown_not_counted(world):
    first = queue_items(world)[0]
    c = client(world)
    c.submit([Label(candid=first.candid, label="galactic", user="carol", experiment=EXPERIMENT)])
    session = LabelSession(c, "dave", EXPERIMENT)
    session.load()
    assert session.others[first.candid]["carol"] == "galactic"
    assert session.done == 0


@pytest.fixture(scope="module")
def rubin_world(tmp_path_factory, mlflow_server):
    env, _, trainer, table, queue = build_world(tmp_path_factory, mlflow_server, "rubin", rubin_packets(2),
                                                    datetime(2026, 3, 27, 5, tzinfo=UTC))
    yield {"env": env, "table": table, "round": queue}
    trainer.stop()


def test_rubin_alert_shows_bands_fluxes_and_stamps(rubin_world, monkeypatch):
    for name in ("SKYSIFT_STORE_URL", "SKYSIFT_TRAINER_ADDRESS", "SKYSIFT_MLFLOW_TRACKING_URI", "SKYSIFT_SECRETS_DIR"):
        monkeypatch.setenv(name, rubin_world["env"][name])
    monkeypatch.setenv("SKYSIFT_APP_USER", "rubin-labeller")
    monkeypatch.setenv("SKYSIFT_APP_EXPERIMENT", EXPERIMENT)
    st.cache_resource.clear()
    st.cache_data.clear()
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    assert not at.exception and not at.error
    facts = dict(zip(at.dataframe[0].value["fact"], at.dataframe[0].value["value"]))
    assert facts["survey"] == "lsst" and facts["reliability"] != "–"
    assert at.toggle(key="flux").value is False  # the flux view is offered for Rubin rows
    at.toggle(key="flux").set_value(True).run()
    assert not at.exception and [img.captions[0] for img in at.image][1:] == ["science", "template", "difference"]
    at.button(key="label_real").click().run()
    assert "1 of" in progress(at)
