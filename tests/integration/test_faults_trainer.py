"""MLflow goes away during a round, against the real MLflow server reached through a loopback relay that is cut
(:class:`~tests.integration.test_faults_ingest.Relay`) right before a chosen request of the round:

- the round fails with Unavailable (UNAVAILABLE through gRPC, a non-zero `skysift round` exit);
- every label event is kept, nothing of the failed round is in the store (the previous round stays the latest,
  its queue the one served), and the champion alias has not moved;
- with MLflow back, the next round succeeds and moves the champion.

The trainer is set to move the champion on any new model (tolerance 1), so that a failed round that would have
moved it shows. MLflow's client is told to retry once, quickly: its default retries take minutes.
"""

from __future__ import annotations

import pytest
import requests

from skysift.errors import Unavailable
from skysift.modeltags import get_tag
from skysift.store import open_store
from skysift.trainer.labels import LabelEvent
from skysift.trainer.rounds import Trainer
from skysift.trainer.settings import TrainerSettings
from tests.integration.test_faults_ingest import Relay
from tests.trainer_data import oracle_table, write_fink_batches

EXPERIMENT = "mlflow-faults"
N_LABELS = 60


@pytest.fixture
def relayed_mlflow(mlflow_server, local_settings, monkeypatch, mlflow_prefix):
    """Settings whose MLflow is the real server behind a relay, with the module's own registered model (its
    champion moves on any model here: no other module may see it); MLflow's client gives up after one quick retry."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
    relay = Relay(mlflow_server.port)
    yield relay, local_settings.model_copy(update={"mlflow_tracking_uri": f"http://127.0.0.1:{relay.port}",
                                                   "mlflow_model_prefix": mlflow_prefix})
    relay.down()


@pytest.fixture
def trainer_with_a_round(relayed_mlflow):
    """A store with real alerts, round 0 done (a random batch), then oracle labels: the next round trains."""
    relay, settings = relayed_mlflow
    store = open_store(settings=settings)
    pool = write_fink_batches(store)
    trainer = Trainer(settings, store, TrainerSettings(permutation_repeats=1, champion_tolerance=1.0,
                                                       mlflow_experiment_prefix=settings.mlflow_model_prefix))
    first = trainer.run_round(EXPERIMENT, "galactic", seed=1, initial_batch_size=10)
    oracle = oracle_table()
    labelled = oracle[oracle["candid"].isin(pool["candid"])].head(N_LABELS)
    trainer.labels.submit([LabelEvent(candid=int(r.candid), label=r.label, user="oracle", source="oracle")
                           for r in labelled.itertuples()])
    return relay, trainer, first


def champion(settings) -> str | None:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    name = get_tag("galactic").registered_name(settings.mlflow_model_prefix)
    try:
        return MlflowClient(tracking_uri=settings.mlflow_tracking_uri).get_model_version_by_alias(name, "champion").version
    except MlflowException:
        return None


def cut_before_request(monkeypatch, relay: Relay, verb: str, path: str) -> list[str]:
    """Cut the relay right before the first HTTP ``verb`` to a URL containing ``path`` (any client of this
    process: MLflow's REST and artifact calls both go through requests)."""
    fired: list[str] = []
    send = requests.Session.request

    def request(self, method, url, *args, **kwargs):
        if not fired and method.upper() == verb and path in url:
            fired.append(url)
            relay.down()
        return send(self, method, url, *args, **kwargs)

    monkeypatch.setattr(requests.Session, "request", request)
    return fired


def check_nothing_of_the_failed_round(trainer: Trainer, first, events_before: int) -> None:
    assert trainer.rounds(EXPERIMENT) == [first.round]
    assert trainer.store.list_keys(f"rounds/{EXPERIMENT}/round=001/") == []
    assert trainer.get_queue(EXPERIMENT).round == first.round  # the previous queue is still the one served
    assert len(trainer.labels.events()) == events_before


SLOW = pytest.mark.slow  # each case costs a trained round (~5-10 s): two run by default


@pytest.mark.parametrize("method,path", [
    pytest.param("POST", "/runs/create", marks=SLOW),  # the round's run is created: nothing logged yet
    pytest.param("PUT", "/mlflow-artifacts/artifacts/", marks=SLOW),  # the run's tables, then the model's files
    pytest.param("POST", "/model-versions/create", marks=SLOW),  # the model is logged, its registration fails
    ("POST", "/registered-models/alias"),  # the champion alias itself
    ("POST", "/runs/update"),  # the run's end, the last request of the round before the alias
])
def test_mlflow_gone_during_a_round_fails_it_and_keeps_labels_queue_and_champion(
        trainer_with_a_round, monkeypatch, method, path):
    relay, trainer, first = trainer_with_a_round
    champion_before, events_before = champion(trainer.settings), len(trainer.labels.events())
    fired = cut_before_request(monkeypatch, relay, method, path)

    with pytest.raises(Unavailable, match="MLflow"):
        trainer.run_round(EXPERIMENT, "galactic", seed=1)
    assert fired, f"the round made no {method} {path}"
    relay.up()
    assert champion(trainer.settings) == champion_before
    check_nothing_of_the_failed_round(trainer, first, events_before)

    again = trainer.run_round(EXPERIMENT, "galactic", seed=1)
    assert again.created and again.round == 1 and again.model_version
    assert again.champion_moved and champion(trainer.settings) == again.model_version
    assert trainer.get_queue(EXPERIMENT).round == 1


def test_skysift_round_exits_non_zero_while_mlflow_is_down_and_succeeds_once_it_is_back(relayed_mlflow, monkeypatch):
    """Through the trainer service: the round's UNAVAILABLE reaches `skysift round` as a clear error and exit code."""
    from typer.testing import CliRunner

    from skysift.cli import app
    from skysift.rpc import server
    from skysift.trainer import service
    from tests import servers

    relay, settings = relayed_mlflow
    write_fink_batches(open_store(settings=settings))
    running = server.start("trainer", lambda s: service.register(s, settings), settings, servers.free_port())
    monkeypatch.setenv("SKYSIFT_TRAINER_ADDRESS", f"127.0.0.1:{running.port}")
    args = ["round", "--experiment", EXPERIMENT, "--initial-batch-size", "10"]
    try:
        relay.down()
        down = CliRunner().invoke(app, args)
        after_down = open_store(settings=settings).list_keys("rounds/")
        relay.up()
        back = CliRunner().invoke(app, args)
    finally:
        running.stop(0)
    assert down.exit_code != 0
    assert f"MLflow tracking server {settings.mlflow_tracking_uri} is not reachable" in down.output
    assert after_down == []
    assert back.exit_code == 0, back.output
    assert "round 0 created" in back.output
