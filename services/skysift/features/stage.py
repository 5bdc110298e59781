"""The features stage: read an alerts batch (and its enrichment), compute the configured feature set, write it
beside them under ``features/``, and keep the candid index's piece of its night up to date
(:mod:`skysift.features.candid_pieces`). Apart from :mod:`skysift.features.core` (feature set 1's computation), which the
feature-set registry (:mod:`skysift.features.sets`) builds on."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pyarrow.compute as pc

from skysift import config
from skysift.alerts.batches import read_alerts
from skysift.errors import InvalidArgument
from skysift.features import candid_pieces
from skysift.features.core import REQUIRED_ALERT_COLUMNS
from skysift.features.sets import feature_set
from skysift.features.settings import FeaturesSettings
from skysift.store import keys
from skysift.store.keys import Batch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FeaturesResult:
    features: Batch
    feature_set_version: str
    n_flagged: int


class FeaturesStage:
    """Read an alerts batch (and its enrichment), write its features next to it under ``features/``."""

    def __init__(self, settings, store, features_settings=None):
        self.settings = settings
        self.store = store
        self.features_settings = features_settings or config.load(FeaturesSettings)
        self.feature_set = feature_set(self.features_settings.version)

    def process(self, alerts_key: str, enriched_key: str | None = None) -> FeaturesResult:
        batch = keys.parse_batch(alerts_key, stage="alerts")
        enriched = None
        if enriched_key:
            enriched_batch = keys.parse_batch(enriched_key, stage="enriched")
            if enriched_batch != batch.sibling("enriched"):
                raise InvalidArgument(f"enriched key {enriched_key!r} is not the enrichment of {alerts_key!r}")
            enriched = self.store.read_table(enriched_key)  # a few small columns: one fetch, then the ones wanted
            enriched = enriched.select([c for c in self.feature_set.enriched_columns if c in enriched.column_names])
        alerts = read_alerts(self.store, alerts_key, REQUIRED_ALERT_COLUMNS, self.feature_set.optional_alert_columns)
        table = self.feature_set.compute(alerts, enriched, threads=self.features_settings.threads)
        flagged = table.column("no_positive_detection")
        n_flagged = int(pc.sum(flagged).as_py() or 0)
        if self.features_settings.drop_no_positive_detection:
            table = table.filter(pc.invert(flagged))
        key = str(batch.sibling("features"))
        self.store.write_table(key, table)
        candid_pieces.bring_up_to_date(self.store, {key: table.column("candid").to_numpy()})
        version = self.feature_set.version
        log.info("features written", extra={"key": key, "rows": table.num_rows, "flagged": n_flagged,
                                            "feature_set_version": version})
        return FeaturesResult(Batch(key, batch.survey, table.num_rows), version, n_flagged)

