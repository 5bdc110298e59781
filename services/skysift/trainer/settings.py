"""Trainer settings (``SKYSIFT_TRAINER_*``): defaults for rounds, the held-out split and the champion rule."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class TrainerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SKYSIFT_TRAINER_", extra="ignore")

    strategy: str = "default"  # see skysift.trainer.strategies.DEFAULT
    # the first batch, while no model can be fitted: a strategy that needs no model (random or diverse)
    initial_strategy: str = "random"
    # choose the decision threshold for F1 by cross-validation on the training labels (logged; 3 more fits)
    tune_threshold: bool = True
    # what may be queued: only this survey (its labels train the model too), alerts with light-curve features
    # in this band, alerts with at least this many detections; empty / 0: no restriction
    pool_survey: str = ""
    pool_band: str = ""
    pool_min_detections: int = Field(0, ge=0)
    batch_size: int = Field(10, ge=1)
    initial_batch_size: int = Field(30, ge=1)
    # Share of each class of newly labelled candids set aside, once and for good, as the held-out set.
    holdout_fraction: float = Field(0.2, ge=0.0, lt=1.0)
    # Store key of a CSV/parquet with a `candid` column: a user-chosen validation set used instead of the split.
    validation_key: str | None = None
    champion_metric: str = "f1"  # accuracy, precision, recall, f1 or roc_auc on the held-out set
    champion_tolerance: float = Field(0.0, ge=0.0)  # "not worse" = new >= champion - tolerance
    committee_size: int = Field(5, ge=2)
    permutation_repeats: int = Field(5, ge=1)
    mlflow_experiment_prefix: str = "skysift"
    pool_read_threads: int = Field(8, ge=1)
    # OpenMP threads for scikit-learn. 1 by default: on a busy 2-core machine spinning OpenMP threads made a
    # 40-row fit 25x slower (6 s vs 0.24 s) and a 100k-row predict 3.5x slower than one thread (measured).
    threads: int = Field(1, ge=1)
