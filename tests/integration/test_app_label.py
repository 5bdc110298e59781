"""The label page (AppTest) against a real trainer process, on a store holding real alerts and their features."""

import html
import os
import re
import uuid
from collections import Counter
from datetime import UTC, datetime

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from skysift import config
from skysift.app.labelling import UNDO_COMMENT, LabelSession, ordered
from skysift.app.trainer import Label, TrainerClient
from skysift.store import open_store
from tests import servers
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
    # nothing listens at the inference address unless a test starts a server there
    return {**os.environ, "SKYSIFT_STORE_URL": str(work / "store"), **mlflow_server.env,
            "SKYSIFT_SECRETS_DIR": str(work / "no-secrets"), "SKYSIFT_LOG_JSON": "false",
            "SKYSIFT_INFERENCE_ADDRESS": f"127.0.0.1:{servers.free_port()}"}, work


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


SERVICE_ENV = ("SKYSIFT_STORE_URL", "SKYSIFT_TRAINER_ADDRESS", "SKYSIFT_MLFLOW_TRACKING_URI", "SKYSIFT_SECRETS_DIR",
               "SKYSIFT_INFERENCE_ADDRESS")


@pytest.fixture
def page(world, monkeypatch, request):
    """A fresh browser session of the app for one labeller (named after the test, so progress is theirs)."""
    user = request.node.name.removeprefix("test_")[:40]
    for name in SERVICE_ENV:
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


def card(at) -> str:
    """The HTML of the alert on screen (the page draws it as one block)."""
    return next(e.proto.body for e in at.get("html") if "sk-card" in e.proto.body)


def shown(at) -> str:
    """The alert's heading as the labeller reads it."""
    head = re.search(r'<div class="sk-head">(.*?)</div>', card(at), re.S).group(1)
    return html.unescape(re.sub(r"<[^>]+>", "", head))


def shown_facts(at) -> dict[str, str]:
    return {html.unescape(k): html.unescape(v) for k, v in re.findall(r"<dt>(.*?)</dt><dd>(.*?)</dd>", card(at))}


def stamp_names(at) -> list[str]:
    return re.findall(r'<img class="sk-small" src="[^"]+" alt="(\w+) stamp"', card(at))


def press(at, label: str):
    """Click a label button as its key does: the button of the alert on screen."""
    candid = re.search(r'data-candid="(\d+)"', card(at)).group(1)
    return at.button(key=f"label_{label}_{candid}").click().run()


def table_with(at, column: str):
    return next(d.value for d in at.dataframe if column in d.value.columns)


def show_labelled(at):
    return at.toggle(key="show_labelled").set_value(True).run()


def test_first_queued_alert_is_shown_with_light_curve_stamps_facts_and_links(page, world):
    at, _ = page
    first = queue_items(world)[0]
    assert f"0 of {N} this round" in progress(at)
    assert f"{first.object_id} · candid {first.candid}" in shown(at)
    assert 'alt="light curve"' in card(at) and stamp_names(at) == ["science", "template", "difference"]
    assert shown_facts(at)["candid"] == str(first.candid)
    links = " ".join(m.value for m in at.markdown)
    assert f"https://fink-portal.org/{first.object_id}" in links


def test_label_key_button_submits_through_the_trainer_and_moves_on(page, world):
    at, user = page
    first, second = queue_items(world)[:2]
    press(at, "galactic")
    assert not at.exception
    events = events_of(world, user)
    assert [(e.candid, e.label, e.source, e.experiment, e.round) for e in events] == [
        (first.candid, "galactic", "human", EXPERIMENT, world["round"].round)]
    assert f"1 of {N} this round" in progress(at)
    assert f"candid {second.candid}" in shown(at)


def test_label_is_visible_after_a_reload(page, world):
    at, _ = page
    first = queue_items(world)[0]
    press(at, "extragalactic")
    st.cache_resource.clear()
    again = AppTest.from_file(str(APP), default_timeout=60).run()  # a new session: state comes from the trainer only
    assert f"1 of {N} this round" in progress(again)
    show_labelled(again).button(key="previous").click().run()
    assert f"candid {first.candid} · your label: extragalactic" in shown(again)


def test_undo_takes_the_label_back_and_returns_to_the_alert(page, world):
    at, user = page
    first = queue_items(world)[0]
    press(at, "agn")
    at.button(key="undo").click().run()
    assert f"0 of {N} this round" in progress(at)
    assert f"candid {first.candid}" in shown(at) and "your label" not in shown(at)
    events = events_of(world, user)
    assert [(e.label, e.comment) for e in events] == [("agn", ""), ("skip", UNDO_COMMENT)]


def test_undo_of_a_relabel_restores_the_earlier_label(page, world):
    at, user = page
    press(at, "bogus")
    show_labelled(at).button(key="previous").click().run()
    press(at, "real")
    at.button(key="undo").click().run()
    first = queue_items(world)[0]
    latest = {e.candid: e.label for e in events_of(world, user)}
    assert latest[first.candid] == "bogus"
    assert "your label: bogus" in shown(at)


def test_skip_records_that_the_alert_was_seen_and_moves_on(page, world):
    at, user = page
    first, second = queue_items(world)[:2]
    press(at, "skip")
    assert [(e.candid, e.label) for e in events_of(world, user)] == [(first.candid, "skip")]
    assert f"candid {second.candid}" in shown(at)


def test_whole_queue_labelled_says_so(page, world):
    at, _ = page
    for _ in range(N):
        press(at, "varstar")
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


def test_labelled_alerts_are_hidden_until_asked_for(page, world):
    at, _ = page
    first, second = queue_items(world)[:2]
    press(at, "galactic")
    assert shown(at).startswith(f"#1 of {N - 1} · ") and f"candid {second.candid}" in shown(at)
    assert at.button(key="previous").disabled  # the labelled alert is not in the list
    show_labelled(at)
    assert shown(at).startswith(f"#2 of {N} · ")
    at.button(key="previous").click().run()
    assert f"candid {first.candid} · your label: galactic" in shown(at)
    at.toggle(key="show_labelled").set_value(False).run()  # the alert on screen stays until one moves on
    assert f"candid {first.candid}" in shown(at)
    at.button(key="next").click().run()
    assert shown(at).startswith(f"#1 of {N - 1} · ") and f"candid {second.candid}" in shown(at)


def test_whole_queue_labelled_then_review_shows_every_alert(page, world):
    at, _ = page
    for _ in range(N):
        press(at, "skip")
    next(b for b in at.button if b.label == "Review from the first alert").click().run()
    assert at.toggle(key="show_labelled").value is True
    assert shown(at).startswith(f"#1 of {N} · ") and "your label: skip" in shown(at)


def test_random_order_is_seeded_per_session_and_stays_put(page, world):
    at, _ = page
    at.selectbox(key="sort_by").set_value("random").run()
    assert not at.exception
    seed = at.session_state["sort_seed"]
    expected = [i.candid for i in ordered(queue_items(world), "random", seed)]
    assert f"candid {expected[0]}" in shown(at)
    assert any(f"seed {seed}" in c.value for c in at.sidebar.caption)
    at.run()
    at.run()  # reruns keep the order and the place in it
    assert f"candid {expected[0]}" in shown(at)
    press(at, "agn")
    assert f"candid {expected[1]}" in shown(at)
    at.selectbox(key="sort_by").set_value("queue").run()  # another order starts from its first unlabelled alert
    first_open = next(i.candid for i in queue_items(world) if i.candid != expected[0])
    assert f"candid {first_open}" in shown(at)


def test_retrained_order_without_the_inference_service_says_so_and_keeps_the_queue(page, world):
    at, _ = page
    at.selectbox(key="sort_by").set_value("retrained").run()
    assert not at.exception and not at.error
    (warning,) = at.sidebar.warning
    assert f"the inference service at {world['env']['SKYSIFT_INFERENCE_ADDRESS']} is unreachable" in warning.value
    assert f"candid {queue_items(world)[0].candid}" in shown(at)


@pytest.fixture(scope="module")
def inference(world, mlflow_server):
    """The inference service on loopback over the world's store, serving a real galactic model under its own alias."""
    from skysift.client import InferenceClient
    from skysift.inference import service
    from skysift.rpc import server
    from tests.inference_support import base_model, point_alias

    uri = mlflow_server.env["SKYSIFT_MLFLOW_TRACKING_URI"]
    alias = f"app{uuid.uuid4().hex[:8]}"
    version = base_model(uri)
    point_alias(uri, "galactic", alias, version)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SKYSIFT_STORE_URL", world["env"]["SKYSIFT_STORE_URL"])
        mp.setenv("SKYSIFT_MLFLOW_TRACKING_URI", uri)
        mp.setenv("SKYSIFT_INFERENCE_ALIAS", alias)
        mp.setenv("SKYSIFT_INFERENCE_MODEL_TAGS", "galactic")
        settings = config.load()
        running = server.start("inference", lambda s: service.register(s, settings), settings, servers.free_port())
    address = f"127.0.0.1:{running.port}"
    with InferenceClient(address) as c:
        c.wait_ready(30)
        yield address, c, version
    running.stop(1)


def test_retrained_order_is_the_champions_uncertainty(page, world, inference, monkeypatch):
    address, inference_client, version = inference
    monkeypatch.setenv("SKYSIFT_INFERENCE_ADDRESS", address)
    st.cache_resource.clear()
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    items = queue_items(world)
    rank = {i.candid: i.rank for i in items}
    p = {r["candid"]: r["probabilities"]["galactic"] for r in inference_client.score_candids(rank, ["galactic"])}
    expected = sorted(rank, key=lambda c: (abs(p[c] - 0.5), rank[c]))  # two classes: nearest 0.5 is least sure
    assert expected != [i.candid for i in items]  # else this test could not tell the orders apart
    at.selectbox(key="sort_by").set_value("retrained").run()
    assert not at.exception and not at.sidebar.warning
    assert [i.candid for i in at.session_state["label_session"].order] == expected
    assert f"candid {expected[0]}" in shown(at)
    assert any(f"version {version}, the champion now (the queue was ranked by no model)" in c.value
               for c in at.sidebar.caption)


def test_retrained_order_stands_when_the_rounds_meta_cannot_be_read(page, world, inference, monkeypatch):
    from skysift import errors
    from skysift.app import champion

    def unreadable(store, experiment, round_number):
        raise errors.NotFound("no object at key 'rounds/.../meta.json'")

    address, _, version = inference
    monkeypatch.setenv("SKYSIFT_INFERENCE_ADDRESS", address)
    monkeypatch.setattr(champion, "round_model", unreadable)
    st.cache_resource.clear()
    st.cache_data.clear()
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    at.selectbox(key="sort_by").set_value("retrained").run()
    assert not at.exception and not at.sidebar.warning  # the scores arrived: the sort is not refused
    assert any(c.value.endswith(f"version {version}, the champion now.") for c in at.sidebar.caption)


def test_my_history_lists_my_labels_latest_first(page, world):
    at, _ = page
    first, second = queue_items(world)[:2]
    press(at, "galactic")
    press(at, "agn")
    at.button(key="undo").click().run()
    at.toggle(key="show_history").set_value(True).run()
    assert not at.exception
    table = table_with(at, "comment")
    assert table[["candid", "label"]].values.tolist() == [[str(second.candid), "undo"], [str(second.candid), "agn"],
                                                          [str(first.candid), "galactic"]]
    assert (table["experiment"] == EXPERIMENT).all() and table["time"].is_monotonic_decreasing


def test_agreement_of_two_labellers_on_the_page(page, world):
    at, _ = page
    items = queue_items(world)
    c = client(world)
    c.submit([Label(candid=i.candid, label=lab, user="zz-ann", experiment=EXPERIMENT, object_id=i.object_id)
              for i, lab in zip(items[:4], ["galactic", "galactic", "agn", "agn"])])
    c.submit([Label(candid=i.candid, label=lab, user="zz-bob", experiment=EXPERIMENT, object_id=i.object_id)
              for i, lab in zip(items[:4], ["galactic", "agn", "agn", "agn"])])
    at.toggle(key="show_agreement").set_value(True).run()
    assert not at.exception
    pairs = table_with(at, "Cohen's kappa")
    row = pairs[(pairs["labeller"] == "zz-ann") & (pairs["other labeller"] == "zz-bob")].iloc[0]
    assert (row["alerts"], row["agreed"], row["agreement %"], row["Cohen's kappa"]) == (4, 3, 75.0, 0.5)
    disagreements = table_with(at, "labels")
    row = disagreements.loc[disagreements["candid"] == str(items[1].candid)].iloc[0]
    assert "zz-ann: galactic · zz-bob: agn" in row["labels"]
    assert row["used by rounds (latest)"] == "agn (zz-bob)"  # the consensus rule: the latest label


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
    facts = shown_facts(at)
    assert facts["survey"] == "lsst" and facts["reliability"] != "–"
    links = " ".join(m.value for m in at.markdown)
    assert f"(https://lasair.lsst.ac.uk/objects/{facts['objectId']}/)" in links
    assert f"(https://lsst.fink-portal.org/{facts['objectId']})" in links
    assert at.toggle(key="flux").value is False  # the flux view is offered for Rubin rows
    at.toggle(key="flux").set_value(True).run()
    assert not at.exception and stamp_names(at) == ["science", "template", "difference"]
    press(at, "real")
    assert "1 of" in progress(at)


def test_labelling_is_blind_to_other_labellers_until_you_labelled_the_alert(page, world):
    at, _ = page
    first = queue_items(world)[0]
    client(world).submit([Label(candid=first.candid, label="agn", user="zz-carol", experiment=EXPERIMENT)])
    next(b for b in at.sidebar.button if b.label == "Reload queue").click().run()
    assert f"candid {first.candid}" in shown(at)
    assert not any("zz-carol" in c.value for c in at.caption)  # not before you labelled it: no anchoring
    press(at, "galactic")
    show_labelled(at).button(key="previous").click().run()
    assert f"candid {first.candid} · your label: galactic" in shown(at)
    assert any(c.value.startswith("Also labelled by") and "zz-carol: agn" in c.value for c in at.caption)


def test_find_jumps_to_an_alert_of_the_queue_and_shows_the_history_of_other_objects(page, world):
    at, _ = page
    third = queue_items(world)[2]
    at.text_input(key="find").input(str(third.candid)).run()
    assert f"candid {third.candid}" in shown(at)
    queued = {i.object_id for i in queue_items(world)}
    counts = Counter(o for o in world["table"]["objectId"].to_pylist() if o not in queued)
    other, n_alerts = counts.most_common(1)[0]  # an object of the store with several alerts, not in this queue
    at.text_input(key="find").input(other).run()
    assert any("not in this round's queue" in c.value for c in at.sidebar.caption)
    history = table_with(at, "MJD")
    assert len(history) == n_alerts > 1 and history["date (UTC)"].str.startswith("20").all()
    assert history["MJD"].is_monotonic_increasing
