"""Settings of the features unit (``SKYSIFT_FEATURES_...``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class FeaturesSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SKYSIFT_FEATURES_", extra="ignore")

    # The prototype dropped alerts without a positive detection; here they are flagged by default and kept, so a
    # model (or a person) can decide. True drops them from the features file (they are still counted as flagged).
    drop_no_positive_detection: bool = False
    # Threads the light-curve package may use per batch; 1 keeps a service replica on one core (scale by replicas).
    threads: int = Field(1, ge=1)
    # Which feature set the stage writes, the trainer trains on and inference computes for inline packets
    # (skysift.features.sets). "1" keeps the models already trained serving; "2" adds every Rubin band on fluxes,
    # colours, rise/decline, periodicity and the offline host / variable-star context. A switch needs a new round.
    version: Literal["1", "2"] = "1"
