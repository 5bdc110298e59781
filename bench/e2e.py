"""The hourly poll end to end, beside the prototype's whole hour."""

from __future__ import annotations

from pathlib import Path

from bench.measure import batches, peak_rss, profile_top, timed
from bench.report import Row
from bench.stages import MODEL_TAG, MemorySource, fink_packets, ingest_stage, store_settings


class EndToEndSection:
    def e2e_stages(self, store_dir: Path, packets):
        from skysift.enrichment.core import EnrichmentStage
        from skysift.enrichment.settings import EnrichmentSettings
        from skysift.features.core import FeaturesStage
        from skysift.features.settings import FeaturesSettings
        from skysift.inference.core import InferenceStage
        from skysift.inference.settings import (
            CsvSettings,
            InferenceSettings,
            SkyPortalSettings,
            SlackSettings,
        )

        settings = store_settings(store_dir, self.tracking_uri)
        ingest = ingest_stage(settings, MemorySource(packets))
        store = ingest.store
        enrichment = EnrichmentStage(settings, store, EnrichmentSettings(lasair_token=None, dustmaps_dir=None))
        features = FeaturesStage(settings, store, FeaturesSettings(threads=1, drop_no_positive_detection=False))
        inference = InferenceStage(settings, store, InferenceSettings(
            model_tags=[MODEL_TAG], csv=CsvSettings(path=None), skyportal=SkyPortalSettings(url=None),
            slack=SlackSettings(webhook_url=None, bot_token=None)))
        inference.registry.get(MODEL_TAG)  # the service loads its model at start, not in the poll

        def poll(_=None) -> list:
            result = ingest.poll(max_alerts=self.o.batch)
            scored = []
            for batch in result.alerts:
                enriched = enrichment.process(batch.key)
                feats = features.process(batch.key, enriched.enriched.key)
                scored.append(inference.score_batch(feats.features.key, [MODEL_TAG]).predictions)
            return scored

        return settings, store, poll

    def run_e2e(self) -> None:
        from bench import baselines

        o = self.o
        packets = fink_packets(self.ztf)
        self.e2e_settings, store, poll = self.e2e_stages(self.dir("e2e"), packets)
        n_polls = max(1, -(-len(packets) // o.batch))
        rss: dict = {}
        with peak_rss(rss):
            seconds, lat, results = timed(poll, range(n_polls))
        candids = [c for scored in results for t in scored for c in t.column("candid").to_pylist()]
        row = self.report.add(Row("e2e", "hourly poll: decode..score, parquet per stage", len(candids), seconds, lat,
                                  rss["mb"], note=f"{o.batch:,} alerts a poll, Fink format, no Sherlock (no network)"))
        self.e2e_store = store

        n_base = min(o.n_e2e_baseline, len(self.ztf.payloads))
        workdir = self.dir("baseline-e2e")
        seconds, lat, res = timed(
            lambda chunk: baselines.prototype_poll(chunk, self.ztf.schema, workdir, self.champion.estimator,
                                                   self.champion.feature_columns),
            batches(self.ztf.payloads[:n_base], o.batch))
        base = self.report.add(Row("baseline", "prototype's hour end to end", n_base, seconds, lat,
                                   note="per-message decode, pandas, per-row E(B-V), per-alert features, score"))
        self.agree("end to end", self.ztf.ids, candids, [int(c) for f in res for c in f["candid"]])
        row.ratios = {"prototype": row.rate / base.rate}
        checks = [self.report.check("end to end >= 2,000 alerts/s per core", row.rate, ">=", 2000, "alerts/s"),
                  self.report.check("end to end >= 30x the prototype's path", row.ratios["prototype"], ">=", 30, "x")]
        if o.profile_misses and not all(c.passed for c in checks):
            _, _, fresh = self.e2e_stages(self.dir("e2e-profile"), packets[:o.batch])
            limits = profile_top(fresh)
            for c in checks:
                c.limits = [] if c.passed else limits
