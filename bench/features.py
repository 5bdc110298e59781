"""Enrichment and features, beside per-row E(B-V) and per-alert features."""

from __future__ import annotations

from bench.measure import peak_rss, profile_top, timed
from bench.report import Row


class FeaturesSection:
    def run_features(self) -> None:
        from bench import baselines
        from skysift.enrichment.core import enrich
        from skysift.enrichment.extinction import healpix_map
        from skysift.features.core import compute_features

        o = self.o
        keys = sorted(k for k in self.fink_store.list_keys("alerts/") if k.endswith("_alerts.parquet"))
        self.alerts_keys = keys
        tables = [self.fink_store.read_table(k) for k in keys]
        ebv_map = healpix_map()
        enrich(tables[0].slice(0, 1), None, ebv_map)  # loads the map file once, as a service does at start
        seconds, lat, enriched = timed(lambda t: enrich(t, None, ebv_map), tables)
        n = sum(t.num_rows for t in tables)
        enrich_row = self.report.add(Row("enrich", "E(B-V) + carried values, no Sherlock", n, seconds, lat))
        rows = list(zip(tables, enriched))
        rss: dict = {}
        with peak_rss(rss):
            seconds, lat, feats = timed(lambda te: compute_features(te[0], te[1]), rows)
        feat_row = self.report.add(Row("features", "compute_features (full table, per batch)", n, seconds, lat, rss["mb"]))
        self.feature_tables = feats

        frames = self.prototype_frames
        ebv_frame = frames[0].head(o.n_ebv_baseline)
        seconds, lat, _ = timed(lambda f: f.apply(lambda r: baselines.ebv_one(r["ra"], r["dec"]), axis=1), [ebv_frame])
        ebv_row = self.report.add(Row("baseline", "per-row E(B-V) lookup (prototype)", len(ebv_frame), seconds, lat))
        seconds, lat, base_feats = timed(lambda f: baselines.make_features(f, with_ebv=False), frames)
        base_row = self.report.add(Row("baseline", "per-alert pandas features", sum(len(f) for f in frames), seconds, lat))
        self.agree("features", self.ztf.ids,
                   [c for t in feats for c in t.column("candid").to_pylist()],
                   [int(c) for f in base_feats for c in f.index])

        enrich_row.ratios = {"per-row E(B-V)": enrich_row.rate / ebv_row.rate}
        proto_rate = 1.0 / (1.0 / base_row.rate + 1.0 / ebv_row.rate)  # the prototype's make_features did both
        feat_row.ratios = {"per-alert pandas": feat_row.rate / base_row.rate,
                           "prototype make_features (+ per-row E(B-V))": feat_row.rate / proto_rate}
        checks = [self.report.check("features >= 5,000 alerts/s per core", feat_row.rate, ">=", 5000, "alerts/s"),
                  self.report.check("features >= 20x a per-alert pandas implementation",
                                    feat_row.ratios["per-alert pandas"], ">=", 20, "x")]
        if o.profile_misses and not all(c.passed for c in checks):
            limits = profile_top(lambda: compute_features(*rows[0]))
            for c in checks:
                c.limits = [] if c.passed else limits
