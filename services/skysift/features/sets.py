"""The feature sets skysift can compute, by version, and the one this deployment computes (a setting).

Why several: a model records the feature-set version it was trained on and inference refuses features of another
version, so a new set must not make the models already serving unusable. Version 1 stays computable; which one the
features stage writes, the trainer trains on and inference computes for inline packets is
``SKYSIFT_FEATURES_VERSION`` (recorded in each features file's parquet metadata).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pyarrow as pa

from skysift.errors import InvalidArgument
from skysift.features import core, v2


@dataclass(frozen=True)
class FeatureSet:
    version: str
    columns: list[str]  # the model's inputs, in order
    schema: pa.Schema
    compute: Callable[..., pa.Table]  # (alerts, enriched=None, *, threads=1) -> features table
    optional_alert_columns: tuple[str, ...]  # read from the alerts batch beside the required ones, when present
    enriched_columns: tuple[str, ...]  # read from the enrichment, when present (an older file lacks newer columns)


FEATURE_SETS = {
    core.FEATURE_SET_VERSION: FeatureSet(core.FEATURE_SET_VERSION, core.FEATURE_COLUMNS, core.FEATURES_SCHEMA,
                                         core.compute_features, (), ("candid", "sherlock_separation_arcsec", "ebv")),
    v2.FEATURE_SET_VERSION: FeatureSet(v2.FEATURE_SET_VERSION, v2.FEATURE_COLUMNS, v2.FEATURES_SCHEMA,
                                       v2.compute_features, v2.FLUX_ALERT_COLUMNS, v2.ENRICHED_COLUMNS),
}


def feature_set(version: str) -> FeatureSet:
    try:
        return FEATURE_SETS[version]
    except KeyError:
        raise InvalidArgument(f"unknown feature set version {version!r}; known: {', '.join(FEATURE_SETS)}") from None


def configured() -> FeatureSet:
    """The feature set of this deployment (``SKYSIFT_FEATURES_VERSION``)."""
    from skysift import config
    from skysift.features.settings import FeaturesSettings

    return feature_set(config.load(FeaturesSettings).version)
