"""Active-learning rounds on pools of growing size, in a local MLflow on sqlite."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta

from bench.measure import peak_rss
from bench.report import Row
from bench.stages import MODEL_TAG, store_settings

POOL_ID_BASE = 9_000_000_000_000_000_000  # candids of resampled pool rows: above every real ZTF/Rubin id
# (pool rows, name, seconds excluding MLflow) checked when the run has a pool of that size (issue 19: the 10M round)
SECONDS_TARGETS = ((100_000, "100k", 20), (10_000_000, "10M", 60))
RSS_TARGET_FROM, RSS_TARGET_MB = 10_000_000, 4096  # the 10M round's peak RSS target


def _CpuTimedTrainer(*args, **kwargs):
    """The product's Trainer, counting the CPU seconds of its MLflow logging (excluded from the round's CPU, as
    from its wall time): on a shared machine the wall time includes waiting for the core, the CPU time does not."""
    from skysift.trainer.rounds import Trainer

    class CpuTimedTrainer(Trainer):
        mlflow_cpu = 0.0

        def _track(self, *a, **kw):
            start = time.process_time()
            try:
                return super()._track(*a, **kw)
            finally:
                self.mlflow_cpu += time.process_time() - start

    return CpuTimedTrainer(*args, **kwargs)


class ActiveLearningSection:
    def start_mlflow(self) -> None:
        """MLflow on a sqlite file in the work directory; artifacts under it (./mlruns of the work directory)."""
        logging.getLogger("alembic").setLevel(logging.WARNING)
        logging.getLogger("mlflow").setLevel(logging.WARNING)
        self.tracking_uri = f"sqlite:///{self.work / 'mlflow.db'}"

    def labelled(self):
        """Fink's labelled alerts through the product's decoder and features, with oracle labels (SIMBAD types)."""
        import pyarrow as pa

        from bench import data
        from skysift.alerts.decode import packets_of
        from skysift.chain import features_of_packets
        from skysift.trainer.oracle import oracle_labels

        (ztf,) = features_of_packets(packets_of(data.labelled_packets(self.o.root))).surveys
        _, first = __import__("numpy").unique(ztf.alerts.column("candid").to_numpy(), return_index=True)
        first = pa.array(sorted(first))  # features are row for row those of the alerts
        labels = oracle_labels(ztf.alerts.take(first).select(["candid", "objectId", "cdsxmatch", "tns"]).to_pandas())
        return ztf.features.take(first), labels

    def pool_store(self, size: int, labelled_features, labels, other_features):
        """A store holding ``size`` feature rows (the labelled ones plus real rows resampled) and the labels."""
        import numpy as np
        import pyarrow as pa

        from skysift.store import keys, open_store
        from skysift.trainer.labels import LabelEvent, LabelStore

        settings = store_settings(self.dir(f"pool-{size}"), self.tracking_uri)
        store = open_store(settings=settings)
        when = datetime(2025, 6, 2, 12, 0, tzinfo=UTC)
        store.write_table(str(keys.new_batch("features", "ztf", when)), labelled_features)
        source = pa.concat_tables([labelled_features, *other_features])
        rng = np.random.default_rng(size)
        remaining, start, i = max(0, size - labelled_features.num_rows), 0, 1
        while remaining > 0:
            count = min(remaining, 100_000)
            part = source.take(pa.array(rng.integers(0, source.num_rows, count)))
            ids = pa.array(np.arange(POOL_ID_BASE + start, POOL_ID_BASE + start + count, dtype=np.int64))
            part = part.set_column(0, "candid", ids)
            store.write_table(str(keys.new_batch("features", "ztf", when + timedelta(seconds=i))), part)
            remaining, start, i = remaining - count, start + count, i + 1
        LabelStore(store).submit([LabelEvent(int(r.candid), r.label, "bench-oracle", object_id=str(r.objectId),
                                             source="oracle") for r in labels.itertuples(index=False)])
        return settings, store

    def al_round(self, size: int, labelled_features, labels, other_features) -> Row:
        from skysift.trainer.settings import TrainerSettings

        t0 = time.perf_counter()
        settings, store = self.pool_store(size, labelled_features, labels, other_features)
        setup = time.perf_counter() - t0
        trainer = _CpuTimedTrainer(settings, store, TrainerSettings(threads=1, mlflow_experiment_prefix="skysift-bench"))
        rss: dict = {}
        with peak_rss(rss):
            t0, cpu0 = time.perf_counter(), time.process_time()
            result = trainer.run_round(f"bench-pool-{size}", MODEL_TAG, force=True)
            wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0 - trainer.mlflow_cpu
        phases = dict(result.timings)
        mlflow_s = phases.get("mlflow", 0.0)
        core = phases.get("fit_score_rank", 0.0) + phases.get("evaluate", 0.0)
        row = self.report.add(Row(
            "AL round", f"pool {size:,} rows", result.n_pool, wall - mlflow_s, [wall - mlflow_s], rss["mb"], unit="rows",
            note=(f"fit+evaluate+score+rank {core:.2f} s, load pool {phases.get('load_pool', 0):.2f} s, "
                  f"CPU {cpu:.2f} s, MLflow logging {mlflow_s:.2f} s (excluded), {result.n_train} train / "
                  f"{result.n_holdout} held out, holdout F1 {result.metrics.get('holdout_f1', float('nan')):.2f}"),
        ))
        row.phases = {**phases, "CPU of the round without MLflow (its time on an idle core)": cpu}  # type: ignore[attr-defined]
        self.round_costs[size] = (setup, wall, mlflow_s)
        return row

    def run_al(self, final: bool) -> None:
        """The first pool (it registers the champion) when not ``final``; the larger pools, budget allowing, after."""
        pools = sorted(self.o.pools)
        if not final:
            import sklearn.ensemble
            import sklearn.metrics  # noqa: F401

            self.start_mlflow()
            self.round_costs: dict[int, tuple[float, float, float]] = {}
            self.al_inputs = self.labelled()
            self.al_round(pools[0], *self.al_inputs, self.feature_tables)
            self._load_champion()
            return
        for size in pools[1:]:
            done = max(self.round_costs)
            setup, wall, mlflow_s = self.round_costs[done]
            estimate = (setup + wall - mlflow_s) * size / done + 20.0  # MLflow's cost after the first round: ~fixed
            if self.elapsed() + estimate > self.o.budget_s:
                self.report.skipped.append(
                    f"AL round on a pool of {size:,} rows: estimated {estimate:.0f} s (from the {done:,} pool) would "
                    f"overrun the {self.o.budget_s:.0f} s budget after {self.elapsed():.0f} s; run "
                    f"`skysift bench --pools {size}` to measure it alone")
                continue
            self.al_round(size, *self.al_inputs, self.feature_tables)
        self._al_checks()

    def _al_checks(self) -> None:
        rows = [r for r in self.report.rows if r.section == "AL round"]
        for size, label, seconds in SECONDS_TARGETS:
            row = next((r for r in rows if abs(r.n - size) <= size // 100), None)
            if row is None:
                continue
            checks = [self.report.check(f"AL round on a {label} pool < {seconds} s excluding MLflow", row.seconds, "<",
                                        seconds, "s")]
            if size >= RSS_TARGET_FROM and row.peak_rss_mb is not None:
                checks.append(self.report.check(f"AL round on a {label} pool: peak RSS < {RSS_TARGET_MB:,} MB",
                                                row.peak_rss_mb, "<", RSS_TARGET_MB, "MB"))
            for c in checks:
                if not c.passed:
                    c.limits = [f"{k}: {v:.2f} s" for k, v in row.phases.items()]  # type: ignore[attr-defined]
        sized = [r for r in rows if r.peak_rss_mb]
        if len(sized) >= 2:
            small, large = sized[0], sized[-1]
            per_row = (large.peak_rss_mb - small.peak_rss_mb) * 1024 * 1024 / max(1, large.n - small.n)
            self.report.notes.append(
                f"AL round memory: peak RSS {small.peak_rss_mb:.0f} MB at {small.n:,} pool rows, "
                f"{large.peak_rss_mb:.0f} MB at {large.n:,}: about {per_row:,.0f} bytes per extra pool row")

    def _load_champion(self) -> None:
        from skysift.inference.registry import ChampionRegistry

        t0 = time.perf_counter()
        self.champion = ChampionRegistry(self.tracking_uri, [MODEL_TAG]).get(MODEL_TAG)
        self.report.environment["model_load_seconds"] = round(time.perf_counter() - t0, 2)
