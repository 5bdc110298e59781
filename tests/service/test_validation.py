"""One rule per field (skysift/validation.py), the same at every method that takes the field, on a real loopback
server: what issue 17 found accepted (SubmitLabels experiment ``../../etc`` and round -1, which GetQueue refused;
CollectDataset survey ``☃``; Poll ``timeout_seconds=1e308``; a 1 MB comment, a 100 kB objectId, 20,000 labels in
one call) is INVALID_ARGUMENT naming the field, and nothing is written."""

from __future__ import annotations

import grpc
import pytest

from skysift import config, errors, validation
from skysift.ingest.service import IngestServicer
from skysift.store import open_store
from skysift.trainer.service import TrainerServicer
from skysift.v1 import ingest_pb2, ingest_pb2_grpc, trainer_pb2, trainer_pb2_grpc
from tests import servers


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    settings = config.Settings(store_url=str(tmp_path_factory.mktemp("validation") / "store"))
    store = open_store(settings=settings)
    with servers.serving(settings, {
            "Trainer": (trainer_pb2_grpc.add_TrainerServicer_to_server, TrainerServicer(settings, store)),
            "Ingest": (ingest_pb2_grpc.add_IngestServicer_to_server, IngestServicer(settings, store))}) as running:
        with servers.channel(running.port) as ch:
            yield {"trainer": trainer_pb2_grpc.TrainerStub(ch), "ingest": ingest_pb2_grpc.IngestStub(ch), "store": store}


def refused(call) -> str:
    with pytest.raises(grpc.RpcError) as info:
        call()
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
    return info.value.details()


BAD_EXPERIMENTS = ["../../etc", "a/b", "x\n", "", "-x", "x" * 65]


@pytest.mark.parametrize("experiment", BAD_EXPERIMENTS[:3] + BAD_EXPERIMENTS[4:])
def test_an_experiment_name_getqueue_refuses_is_refused_in_a_label_too_and_nothing_is_written(world, experiment):
    label = trainer_pb2.LabelEvent(candid=1, label="bogus", experiment=experiment)
    in_label = refused(lambda: world["trainer"].SubmitLabels(trainer_pb2.SubmitLabelsRequest(labels=[label]), timeout=10))
    in_queue = refused(lambda: world["trainer"].GetQueue(trainer_pb2.GetQueueRequest(experiment=experiment), timeout=10))
    assert in_label == in_queue and "invalid experiment name" in in_label
    assert world["store"].list_keys("labels/events/") == []


@pytest.mark.parametrize("number", [-1, -(2**31), validation.MAX_ROUND + 1])
def test_a_round_number_out_of_range_is_refused_by_submitlabels_and_getqueue_alike(world, number):
    label = trainer_pb2.LabelEvent(candid=1, label="bogus", experiment="vra", round=number)
    in_label = refused(lambda: world["trainer"].SubmitLabels(trainer_pb2.SubmitLabelsRequest(labels=[label]), timeout=10))
    in_queue = refused(lambda: world["trainer"].GetQueue(trainer_pb2.GetQueueRequest(experiment="vra", round=number),
                                                         timeout=10))
    assert in_label == in_queue == f"round must be between 0 and {validation.MAX_ROUND}, got {number}"


@pytest.mark.parametrize("field,value,words", [
    ("comment", "c" * 1_000_000, "comment may hold 2000 characters, got 1000000"),
    ("object_id", "Z" * 100_000, "invalid objectId"),
    ("object_id", "ZTF18 abc", "invalid objectId"),
])
def test_oversized_or_malformed_label_text_is_refused_without_echoing_it(world, field, value, words):
    label = trainer_pb2.LabelEvent(candid=1, label="bogus", **{field: value})
    details = refused(lambda: world["trainer"].SubmitLabels(trainer_pb2.SubmitLabelsRequest(labels=[label]), timeout=30))
    assert words in details and len(details) < 400
    assert world["store"].list_keys("labels/events/") == []


def test_more_labels_than_one_call_may_hold_are_refused_before_any_is_written(world):
    labels = [trainer_pb2.LabelEvent(candid=c, label="bogus") for c in range(1, validation.MAX_LABELS_PER_CALL + 2)]
    details = refused(lambda: world["trainer"].SubmitLabels(trainer_pb2.SubmitLabelsRequest(labels=labels), timeout=30))
    assert f"at most {validation.MAX_LABELS_PER_CALL} labels per call, got {len(labels)}" in details
    assert world["store"].list_keys("labels/events/") == []


@pytest.mark.parametrize("survey", ["☃", "ZTF", "../ztf"])
def test_a_dataset_of_an_unknown_survey_is_refused_not_an_empty_success(world, survey):
    details = refused(lambda: world["trainer"].CollectDataset(trainer_pb2.CollectDatasetRequest(name="d", survey=survey),
                                                              timeout=30))
    assert "unknown survey" in details and "lsst, ztf" in details


@pytest.mark.parametrize("name", ["x" * (validation.MAX_DATASET_NAME_CHARS + 1), "two\nlines", " "])
def test_a_dataset_name_too_long_or_unprintable_is_refused(world, name):
    assert "dataset" in refused(lambda: world["trainer"].CollectDataset(trainer_pb2.CollectDatasetRequest(name=name),
                                                                        timeout=30))


@pytest.mark.parametrize("timeout", [1e308, validation.MAX_TIMEOUT_S + 1, -1.0, float("nan")])
def test_a_poll_timeout_past_a_day_or_not_finite_is_refused(world, timeout):
    details = refused(lambda: world["ingest"].Poll(ingest_pb2.PollRequest(timeout_seconds=timeout), timeout=10))
    assert details.startswith("timeout_seconds must be between 0 and 86400 seconds")


@pytest.mark.parametrize("champions", [[("../x", "1")], [("skysift_galactic", "v2")], [("skysift_galactic", "0")],
                                       [("m", "1")] * (validation.MAX_CHAMPIONS + 1)])
def test_a_poll_naming_a_malformed_champion_or_too_many_is_refused(world, champions):
    request = ingest_pb2.PollRequest(champions=[ingest_pb2.ChampionVersion(model_name=n, model_version=v)
                                                for n, v in champions])
    assert "champion" in refused(lambda: world["ingest"].Poll(request, timeout=10))


def test_each_rule_accepts_what_the_services_accept():
    """The accepted side of each rule (the refused side is above, through the services)."""
    assert validation.check_experiment("vra-2025.06_a") == "vra-2025.06_a"
    assert validation.check_round(None) is None and validation.check_round(0) == 0
    assert validation.check_survey("") == "" and validation.check_survey("lsst") == "lsst"
    with pytest.raises(errors.InvalidArgument, match="unknown survey ''"):
        validation.check_survey("", allow_all=False)
    assert validation.check_object_id("ZTF18abcdefg") and validation.check_object_id("313853982473601024")
    assert validation.check_object_id("") == ""
    assert validation.check_timeout(0.0) == 0.0 and validation.check_comment("c" * 2000)
    assert validation.check_champions([("skysift_galactic", "12"), ("t-rescore.x_y", "1")])
