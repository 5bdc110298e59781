"""Fuzzing every method of the Trainer on a real loopback server (local store with real alerts and features, the
real MLflow server): a malformed request gets INVALID_ARGUMENT, NOT_FOUND or FAILED_PRECONDITION with a message,
never INTERNAL or UNKNOWN, and the server keeps serving. The helpers are those of ``test_fuzz_grpc``.

The stored labels all name one class, so a valid RunRound never fits a model (a cheap random round) and the
fuzzing stays fast; the checks of request fields happen before any fitting either way.
"""

from __future__ import annotations

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import given, settings
from hypothesis import strategies as st

from skysift import config, modeltags
from skysift.rpc import server
from skysift.store import open_store
from skysift.trainer import service
from skysift.trainer.labels import SOURCES, LabelEvent, LabelStore
from skysift.trainer.model import PARAM_ALIASES, PARAM_TYPES
from skysift.trainer.strategies import STRATEGIES
from skysift.v1 import trainer_pb2, trainer_pb2_grpc
from skysift.validation import EXPERIMENT as EXPERIMENT_NAME
from tests import servers
from tests.service.test_fuzz_grpc import FUZZ, check_random_bytes, doubles, int32, outcome, raw_methods
from tests.trainer_data import write_fink_batches

EXPERIMENT = "fuzzed"
CALLER = "test-operator"  # the identity of the test token: a label's user is the caller's
int64 = st.integers(-(2**63), 2**63 - 1)


@pytest.fixture(scope="module")
def world(tmp_path_factory, mlflow_server, mlflow_prefix):
    """Real features in the store, labels of one class, a round 0 of ``fuzzed`` and no dataset yet; the module's
    own registered model (never a champion: one class cannot be fitted) and MLflow experiments."""
    settings = config.Settings(store_url=str(tmp_path_factory.mktemp("fuzz-trainer") / "store"),
                               mlflow_tracking_uri=mlflow_server.env["SKYSIFT_MLFLOW_TRACKING_URI"],
                               mlflow_model_prefix=mlflow_prefix)
    with pytest.MonkeyPatch.context() as mp:  # the servicer reads its TrainerSettings from the environment
        mp.setenv("SKYSIFT_TRAINER_MLFLOW_EXPERIMENT_PREFIX", mlflow_prefix)
        yield from serve(settings)


def serve(settings):
    store = open_store(settings=settings)
    pool = write_fink_batches(store)
    candids = pool["candid"].astype(int).tolist()
    LabelStore(store).submit([LabelEvent(candid=c, label="galactic", user="seed") for c in candids[:20]])
    running = server.start("trainer", lambda s: service.register(s, settings), settings, servers.free_port())
    channel = servers.channel(running.port)
    stub = trainer_pb2_grpc.TrainerStub(channel)
    stub.RunRound(trainer_pb2.RunRoundRequest(experiment=EXPERIMENT, initial_batch_size=5), timeout=120)
    yield {"stub": stub, "candids": candids, "store": store, "channel": channel}
    channel.close()
    running.stop(0)


@pytest.fixture
def served(world):
    """The module's trainer, checked after the test to still take labels, serve the queue and run a round (each
    fuzz test leaves it so, whatever order the tests run in)."""
    yield world
    stub = world["stub"]
    ids = stub.SubmitLabels(trainer_pb2.SubmitLabelsRequest(
        labels=[trainer_pb2.LabelEvent(candid=world["candids"][-1], label="galactic")]), timeout=30)
    assert len(ids.event_ids) == 1
    assert stub.GetQueue(trainer_pb2.GetQueueRequest(experiment=EXPERIMENT, round=0), timeout=30).items
    assert stub.RunRound(trainer_pb2.RunRoundRequest(experiment=EXPERIMENT), timeout=120).round >= 0


def timestamps() -> st.SearchStrategy[Timestamp]:
    """Valid times, the unset one, and seconds or nanos outside what a Timestamp may hold."""
    return st.builds(Timestamp, seconds=st.one_of(st.integers(0, 4_102_444_800), int64),
                     nanos=st.one_of(st.just(0), st.integers(-(2**31), 2**31 - 1)))


def words(known) -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(sorted(known)), st.just(""), st.text(max_size=20))


@FUZZ
@given(data=st.data())
def test_fuzzed_label_submissions_get_a_clear_status(served, data):
    world = served
    def event():
        round_ = data.draw(st.one_of(st.none(), int32))
        return trainer_pb2.LabelEvent(
            candid=data.draw(st.one_of(st.sampled_from(world["candids"]), int64)), label=data.draw(words(modeltags.labels())),
            user=data.draw(st.one_of(st.sampled_from(["", CALLER]), st.text(max_size=10))), model_tag=data.draw(words(modeltags.tags())),
            source=data.draw(words(SOURCES)), timestamp=data.draw(st.one_of(st.just(Timestamp()), timestamps())),
            object_id=data.draw(st.text(max_size=20)), experiment=data.draw(st.text(max_size=20)),
            comment=data.draw(st.text(max_size=50)), **({} if round_ is None else {"round": round_}))

    labels = [event() for _ in range(data.draw(st.integers(0, 3)))]
    result = outcome(lambda: world["stub"].SubmitLabels(trainer_pb2.SubmitLabelsRequest(labels=labels), timeout=30))
    others = [e for e in labels if e.user not in ("", CALLER)]  # naming another user than the caller's identity
    if result is None:
        assert all(e.candid > 0 and e.label in modeltags.labels() for e in labels) and not others
    else:
        assert result[0] in ({grpc.StatusCode.PERMISSION_DENIED} if others else set()) | {grpc.StatusCode.INVALID_ARGUMENT}


@FUZZ
@given(candids=st.lists(st.one_of(st.sampled_from([1, 2]), int64), max_size=4), history=st.booleans(),
       user=st.text(max_size=10))
def test_fuzzed_label_queries_are_answered(served, candids, history, user):
    world = served
    request = trainer_pb2.GetLabelsRequest(candids=candids, history=history, user=user)
    assert outcome(lambda: world["stub"].GetLabels(request, timeout=30)) is None


def experiments() -> st.SearchStrategy[str]:
    return st.one_of(st.just(EXPERIMENT), st.text(max_size=70), st.sampled_from(["", " ", "a/b", "../x", "x\n", "-x"]))


@FUZZ
@given(experiment=experiments(), round_=st.one_of(st.none(), int32))
def test_fuzzed_queue_requests_get_a_clear_status(served, experiment, round_):
    world = served
    request = trainer_pb2.GetQueueRequest(experiment=experiment, **({} if round_ is None else {"round": round_}))
    result = outcome(lambda: world["stub"].GetQueue(request, timeout=30))
    if experiment == EXPERIMENT and round_ in (None, 0):
        assert result is None


def params() -> st.SearchStrategy[dict]:
    names = st.one_of(st.sampled_from(sorted(PARAM_TYPES) + sorted(PARAM_ALIASES)), st.text(max_size=10))
    values = st.one_of(st.sampled_from(["nan", "inf", "-1", "0", "1", "2", "0.1", "balanced", "none", ""]),
                       st.text(max_size=8), st.floats().map(str))
    return st.dictionaries(names, values, max_size=3)


@FUZZ
@given(data=st.data())
def test_fuzzed_round_requests_get_a_clear_status(served, data):
    request = trainer_pb2.RunRoundRequest(
        experiment=data.draw(experiments()), model_tag=data.draw(words(modeltags.tags())),
        strategy=data.draw(words(STRATEGIES)), batch_size=data.draw(st.one_of(st.integers(-3, 50), int32)),
        initial_batch_size=data.draw(st.one_of(st.integers(-3, 50), int32)), seed=data.draw(int32),
        params=data.draw(params()), force=data.draw(st.booleans()))
    result = outcome(lambda: served["stub"].RunRound(request, timeout=120))
    sizes = (request.batch_size, request.initial_batch_size)
    if not EXPERIMENT_NAME.fullmatch(request.experiment) or request.seed < 0 or min(sizes) < 0 \
            or (request.model_tag and request.model_tag not in modeltags.tags()) \
            or (request.strategy and request.strategy not in STRATEGIES):
        assert result is not None and result[0] == grpc.StatusCode.INVALID_ARGUMENT, request
    elif request.experiment == EXPERIMENT and request.model_tag in ("", "galactic") and not request.params \
:
        assert result is None, result  # every field valid: the round runs (or returns the last one)


@settings(FUZZ, max_examples=12)  # a dataset that can be collected is written and logged to MLflow: ~1 s each
@given(data=st.data())
def test_fuzzed_dataset_collections_get_a_clear_status(served, data):
    world = served
    times = {k: data.draw(st.one_of(st.none(), timestamps())) for k in ("start", "end")}
    request = trainer_pb2.CollectDatasetRequest(
        name=data.draw(st.one_of(st.just("fuzz"), st.text(max_size=20))), survey=data.draw(words(["ztf", "lsst"])),
        score_threshold=data.draw(st.one_of(st.sampled_from([0.0, 0.5, 0.95, 1.0]), doubles)),
        prefer_validated=data.draw(st.booleans()), max_samples=data.draw(st.one_of(st.integers(-2, 50), int32)),
        model_tag=data.draw(words(modeltags.tags())), **{k: v for k, v in times.items() if v is not None})
    result = outcome(lambda: world["stub"].CollectDataset(request, timeout=120))
    threshold = request.score_threshold or 0.9  # 0 means the default, as for max_samples
    if request.max_samples < 0 or not 0.5 <= threshold <= 1.0 or not request.name.strip() \
            or (request.model_tag and request.model_tag not in modeltags.tags()):
        assert result is not None and result[0] == grpc.StatusCode.INVALID_ARGUMENT, request
    elif request.name == "fuzz" and request.model_tag in ("", "galactic") and request.survey in ("", "ztf") \
            and not request.HasField("start") and not request.HasField("end"):
        assert result is None, result  # the stored alerts, unwindowed: a dataset (passing its checks or not)


@FUZZ
@given(dataset_id=st.one_of(st.text(max_size=30), st.from_regex(r"\A[a-z0-9-]{1,30}\Z"),
                            st.sampled_from(["../x", "a/b", "A", "x\n", "fuzz\n"])))
def test_fuzzed_dataset_ids_are_invalid_or_not_found(served, dataset_id):
    world = served
    stub = world["stub"]
    code, details = outcome(lambda: stub.GetDataset(trainer_pb2.GetDatasetRequest(dataset_id=dataset_id), timeout=30))
    assert code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND)
    assert outcome(lambda: stub.ListDatasets(trainer_pb2.ListDatasetsRequest(), timeout=30)) is None


@FUZZ
@given(data=st.data())
def test_random_bytes_as_the_request_of_every_trainer_method_are_invalid_argument_without_a_traceback(served, data):
    check_random_bytes(raw_methods(served["channel"], trainer_pb2), data)


def expect_invalid(call, *words: str) -> str:
    code, details = outcome(call)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and all(w in details for w in words), details
    return details


@pytest.mark.parametrize("event,words", [
    (trainer_pb2.LabelEvent(candid=1, label="supernova"), ["unknown label 'supernova'", "galactic"]),
    (trainer_pb2.LabelEvent(candid=0, label="bogus"), ["candid must be a positive integer"]),
    (trainer_pb2.LabelEvent(candid=-5, label="bogus"), ["candid must be a positive integer", "-5"]),
    (trainer_pb2.LabelEvent(candid=7, label="bogus", timestamp=Timestamp(seconds=2**40)),
     ["timestamp of the label for candid 7", "must be in range"]),
], ids=["unknown-label", "zero-candid", "negative-candid", "timestamp-out-of-range"])
def test_bad_labels_are_refused_with_a_message_naming_the_problem_and_nothing_is_written(world, event, words):
    """A batch with one bad event writes none of it (a good event beside it included)."""
    before = len(world["store"].list_keys("labels/events/"))
    good = trainer_pb2.LabelEvent(candid=world["candids"][0], label="galactic")
    expect_invalid(lambda: world["stub"].SubmitLabels(trainer_pb2.SubmitLabelsRequest(labels=[good, event]), timeout=30),
                   *words)
    assert len(world["store"].list_keys("labels/events/")) == before


def test_a_label_naming_another_user_is_refused_and_nothing_is_written(world):
    before = len(world["store"].list_keys("labels/events/"))
    good = trainer_pb2.LabelEvent(candid=world["candids"][0], label="galactic")
    other = trainer_pb2.LabelEvent(candid=world["candids"][1], label="galactic", user="ana")
    code, details = outcome(lambda: world["stub"].SubmitLabels(trainer_pb2.SubmitLabelsRequest(labels=[good, other]),
                                                               timeout=30))
    assert code == grpc.StatusCode.PERMISSION_DENIED and "'ana'" in details and CALLER in details
    assert len(world["store"].list_keys("labels/events/")) == before


def test_a_label_for_a_candid_not_in_the_store_is_kept(world):
    """Not an error by design: labels can be imported before their alerts are ingested; a round reports the
    labelled candids it has no features for."""
    stub = world["stub"]
    absent = max(world["candids"]) + 12345
    stub.SubmitLabels(trainer_pb2.SubmitLabelsRequest(labels=[trainer_pb2.LabelEvent(candid=absent, label="bogus")]), timeout=30)
    assert [e.candid for e in stub.GetLabels(trainer_pb2.GetLabelsRequest(candids=[absent]), timeout=30).labels] == [absent]


@pytest.mark.parametrize("params,words", [
    ({"learning_rate": "nan"}, ["learning_rate", "finite"]),
    ({"l2": "inf"}, ["l2_regularization", "finite"]),
    ({"max_leaf_nodes": "1"}, ["max_leaf_nodes", "at least 2"]),
    ({"max_iter": "100000000"}, ["max_iter", "at most 5000"]),  # would hold the round lock for hours
])
def test_model_parameters_scikit_learn_cannot_fit_are_invalid_arguments(world, params, words):
    request = trainer_pb2.RunRoundRequest(experiment="params", params=params, force=True)
    expect_invalid(lambda: world["stub"].RunRound(request, timeout=120), *words)


def test_a_negative_seed_is_an_invalid_argument(world):
    request = trainer_pb2.RunRoundRequest(experiment="seeds", seed=-1, force=True)
    expect_invalid(lambda: world["stub"].RunRound(request, timeout=120), "seed must not be negative")


def test_an_experiment_name_ending_in_a_newline_is_invalid(world):
    stub = world["stub"]
    expect_invalid(lambda: stub.RunRound(trainer_pb2.RunRoundRequest(experiment=EXPERIMENT + "\n"), timeout=120),
                   "invalid experiment name")
    expect_invalid(lambda: stub.GetDataset(trainer_pb2.GetDatasetRequest(dataset_id="fuzz\n"), timeout=30),
                   "invalid dataset id")


def test_an_out_of_range_dataset_window_is_an_invalid_argument(world):
    request = trainer_pb2.CollectDatasetRequest(name="w", start=Timestamp(seconds=-(2**40)))
    expect_invalid(lambda: world["stub"].CollectDataset(request, timeout=60), "start", "must be in range")
