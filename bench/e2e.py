"""The hourly poll end to end, ZTF and Rubin, each beside the prototype's whole hour on the same packets."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from bench.measure import batches, peak_rss, profile_top, timed
from bench.report import Row
from bench.stages import MODEL_TAG, MemorySource, fink_packets, ingest_stage, rubin_packets, store_settings


class EndToEndSection:
    def e2e_stages(self, store_dir: Path, packets):
        from skysift.enrichment.core import EnrichmentStage
        from skysift.enrichment.settings import EnrichmentSettings
        from skysift.features.settings import FeaturesSettings
        from skysift.features.stage import FeaturesStage
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
        o = self.o
        n_base = min(o.n_e2e_baseline, len(self.ztf.payloads))
        self.e2e_settings, self.e2e_store = self.e2e_survey(
            "ZTF", fink_packets(self.ztf), self.ztf.ids, self.ztf.payloads[:n_base], self.ztf.schema, "ztf",
            target=4000, note="Fink format")
        rubin = [i for g in self.rubin for i in g.ids]
        base, left = [], min(o.n_e2e_baseline, len(rubin))  # the first alerts of the same packets, in their order
        for g in self.rubin:
            base.append(replace(g, payloads=g.payloads[:left], ids=g.ids[:left]))
            left -= len(base[-1].payloads)
        self.e2e_survey("Rubin", rubin_packets(self.rubin), rubin, [g for g in base if g.payloads], None, "lsst",
                        target=1500, note="Confluent wire, schemas 9.0 and 10.0")

    def e2e_survey(self, name: str, packets, ids: list[int], baseline_input, schema, survey: str, target: int,
                   note: str):
        """One survey's hourly poll end to end and the prototype's hour on the first alerts of the same packets;
        returns the settings and store the scoring section reuses."""
        from bench import baselines

        o = self.o
        settings, store, poll = self.e2e_stages(self.dir(f"e2e-{survey}"), packets)
        n_polls = max(1, -(-len(packets) // o.batch))
        rss: dict = {}
        with peak_rss(rss):
            seconds, lat, results = timed(poll, range(n_polls))
        candids = [c for scored in results for t in scored for c in t.column("candid").to_pylist()]
        row = self.report.add(Row("e2e", f"{name} hourly poll: decode..score, parquet per stage", len(candids),
                                  seconds, lat, rss["mb"],
                                  note=f"{o.batch:,} alerts a poll, {note}, no Sherlock (no network)"))

        workdir = self.dir(f"baseline-e2e-{survey}")
        chunks = [baseline_input] if survey == "lsst" else batches(baseline_input, o.batch)
        seconds, lat, res = timed(
            lambda chunk: baselines.prototype_poll(chunk, schema, workdir, self.champion.estimator,
                                                   self.champion.feature_columns, survey), chunks)
        n_base = sum(len(f) for f in res)
        base = self.report.add(Row("baseline", f"prototype's hour end to end, {name}", n_base, seconds, lat,
                                   note="per-message decode, pandas, per-row E(B-V), per-alert features, score"))
        self.agree(f"end to end {name}", ids, candids, [int(c) for f in res for c in f["candid"]])
        row.ratios = {"prototype": row.rate / base.rate}
        checks = [self.report.check(f"{name} end to end >= {target:,} alerts/s per core", row.rate, ">=", target,
                                    "alerts/s")]
        if survey == "ztf":
            checks.append(self.report.check("ZTF end to end >= 40x the prototype's hour", row.ratios["prototype"],
                                            ">=", 40, "x"))
        if o.profile_misses and not all(c.passed for c in checks):
            _, _, fresh = self.e2e_stages(self.dir(f"e2e-profile-{survey}"), packets[:o.batch])
            limits = profile_top(fresh)
            for c in checks:
                c.limits = [] if c.passed else limits
        return settings, store
