"""A user-chosen validation set replaces the held-out split (local store, real alerts, real MLflow server)."""

from __future__ import annotations

import pandas as pd

from skysift.store import open_store
from skysift.trainer.labels import LabelEvent, LabelStore
from skysift.trainer.rounds import Trainer
from skysift.trainer.settings import TrainerSettings
from tests.trainer_data import fink_alerts_and_features, oracle_table, write_fink_batches


def test_validation_set_is_the_held_out_set_and_never_trained_on(local_settings, mlflow_server):
    settings = local_settings.model_copy(update={"mlflow_tracking_uri": mlflow_server.env["SKYSIFT_MLFLOW_TRACKING_URI"]})
    store = open_store(settings=settings)
    pool = write_fink_batches(store)
    oracle = oracle_table()
    labelled = oracle[oracle["candid"].isin(pool["candid"])].head(80)
    LabelStore(store).submit([LabelEvent(candid=int(r.candid), label=r.label, user="oracle", source="oracle")
                              for r in labelled.itertuples()])
    validation = labelled.iloc[::4]["candid"].tolist() + [1]  # a candid without a label is simply not evaluated
    store.put_bytes("validation/june.csv", pd.DataFrame({"candid": validation}).to_csv(index=False).encode())
    ts = TrainerSettings(validation_key="validation/june.csv", permutation_repeats=1)
    result = Trainer(settings, store, ts).run_round("val", "galactic", seed=1)
    hold = set(store.read_table("rounds/val/round=000/holdout_ids.parquet").column("candid").to_pylist())
    train = set(store.read_table("rounds/val/round=000/training_ids.parquet").column("candid").to_pylist())
    assert hold == set(validation[:-1]) and not hold & train
    # the 60 labelled alerts outside the validation set train, plus other alerts of their objects ('galactic' is a
    # class of the object: its label counts for them), never an alert of an object with a validation alert
    labelled_train = set(labelled["candid"]) - set(validation)
    alerts, _ = fink_alerts_and_features()
    object_of = dict(zip(alerts.column("candid").to_pylist(), alerts.column("objectId").to_pylist()))
    lent = train - labelled_train
    assert labelled_train <= train and len(labelled_train) == 60
    assert {object_of[c] for c in lent} <= {object_of[c] for c in labelled_train}
    assert not {object_of[c] for c in lent} & {object_of[c] for c in hold}
    assert result.n_holdout == 20 and "holdout_f1" in result.metrics
