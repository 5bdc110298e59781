"""The measurements behind `skysift bench`, on one pinned core, in a temporary directory.

Order: ingest (three formats, with and without cutouts) → enrichment and features → the first active-learning
round (its model becomes the champion in a local MLflow on sqlite) → the hourly poll end to end → rounds on
larger pools while the time budget allows → gRPC scoring → 1 vs 2 feature workers. Every product figure has its
baselines beside it, run in the same process on the same bytes (baselines on the first ``n_baseline`` of them:
at ~100 alerts/s the prototype's path would take minutes on 10,000).

Stages are built once and reused, as a running service does; one-off costs (imports, MLflow, model loading)
are not in the rates. Peak RSS is the process's high-water mark, reset before each case (Linux clear_refs).
"""

from __future__ import annotations

import cProfile
import logging
import os
import platform
import pstats
import re
import shutil
import socket
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from skysift.bench.report import Report, Row

# One core means one thread everywhere; polars reads its variable when first imported.
THREAD_ENV = {"POLARS_MAX_THREADS": "1", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
              "MKL_NUM_THREADS": "1", "RAYON_NUM_THREADS": "1"}
SECTIONS = ("ingest", "features", "al", "e2e", "inference", "scaling")
MODEL_TAG = "galactic"
FLOOR_BATCHES = 5  # the decode floor runs on the first batches of the same packets (its rate is steady)
SCALING_ROUNDS = 3  # each alerts batch is featurised this many times in the 1-vs-2-workers run
POOL_ID_BASE = 9_000_000_000_000_000_000  # candids of resampled pool rows: above every real ZTF/Rubin id


def single_thread_env() -> None:
    for name, value in THREAD_ENV.items():
        os.environ.setdefault(name, value)


@dataclass
class Options:
    root: Path = Path(".")  # the checkout holding tests/data/alerts
    out: Path | None = Path("bench/results.json")
    n_alerts: int = 10_000  # ZTF alerts per product case
    batch: int = 1_000  # alerts per poll (the prototype's hourly poll)
    n_rubin: int = 2_000
    n_baseline: int = 1_000  # alerts given to fastavro and the prototype-style ingest and features
    n_ebv_baseline: int = 200  # alerts given to the per-row E(B-V) lookup (~11 ms each)
    n_e2e_baseline: int = 300  # alerts given to the prototype's whole hour
    pools: tuple[int, ...] = (10_000, 100_000, 1_000_000)
    grpc_requests: dict[int, int] = field(default_factory=lambda: {1: 400, 100: 60, 1000: 20})
    workers: tuple[int, ...] = (1, 2)
    budget_s: float = 250.0  # optional work (the largest pools) is skipped when it would overrun this
    cpu: int | None = None  # the core to pin to (default: the last allowed one)
    sections: tuple[str, ...] = SECTIONS
    profile_misses: bool = True


# -- measuring ------------------------------------------------------------------------------------------------

def _hwm_kb() -> int | None:
    try:
        return int(re.search(r"VmHWM:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))
    except (OSError, AttributeError):
        return None


@contextmanager
def peak_rss(out: dict):
    """Peak RSS (MB) of the process while the block runs: the high-water mark is reset first where Linux allows."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
    try:
        yield
    finally:
        kb = _hwm_kb()
        out["mb"] = kb / 1024 if kb is not None else None


def timed(fn, items) -> tuple[float, list[float], list]:
    """Run ``fn`` on each item; (total seconds, per-item seconds, results)."""
    latencies, results = [], []
    for item in items:
        t0 = time.perf_counter()
        results.append(fn(item))
        latencies.append(time.perf_counter() - t0)
    return sum(latencies), latencies, results


def profile_top(fn, n: int = 6) -> list[str]:
    """The ``n`` functions with the most own time in one call of ``fn`` (cProfile), as readable lines."""
    profiler = cProfile.Profile()
    profiler.runcall(fn)
    stats = pstats.Stats(profiler)
    total = sum(v[2] for v in stats.stats.values()) or 1.0
    top = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:n]
    lines = []
    for (path, line, name), (_, ncalls, tottime, _, _) in top:
        where = name if path == "~" else f"{name} ({Path(path).parent.name}/{Path(path).name}:{line})"
        lines.append(f"{tottime / total:5.1%} own time  {where}  x{ncalls}")
    return lines


def batches(items: list, size: int) -> list[list]:
    return [items[i:i + size] for i in range(0, len(items), size)]


# -- the product's stages, fed from memory --------------------------------------------------------------------

class MemorySource:
    """A topic's messages already in memory, fetched and committed like the Kafka source, without a broker:
    the benchmark measures skysift, not Kafka."""

    def __init__(self, packets):
        self.packets = packets
        self.position = self._next = 0

    def fetch(self, max_alerts: int, timeout_s: float):
        out = self.packets[self.position:self.position + max_alerts]
        self._next = self.position + len(out)
        return out

    def commit(self) -> None:
        self.position = self._next


def _settings(store_dir: Path, tracking_uri: str = ""):
    from skysift.config import Settings

    return Settings(store_url=str(store_dir), mlflow_tracking_uri=tracking_uri or "sqlite:///unused.db")


def _ingest_stage(settings, source: MemorySource | None = None):
    from skysift.ingest.core import IngestStage
    from skysift.ingest.settings import IngestSettings
    from skysift.store import open_store

    class MemoryIngest(IngestStage):
        def open_source(self, replay_path):
            return source if source is not None and not replay_path else super().open_source(replay_path)

    ingest = IngestSettings(source="replay", filter=None, keep_cutouts=False, max_alerts=1000, timeout_s=600)
    return MemoryIngest(settings, open_store(settings=settings), ingest)


def _fink_packets(alerts) -> list:
    """Fink's Kafka messages: value = schemaless payload, key = the writer schema."""
    from skysift.alerts.decode import Packet

    return [Packet(p, schema=alerts.schema, format="schemaless", topic="fink_vra_ztf", partition=0, offset=i)
            for i, p in enumerate(alerts.payloads)]


def _store_candids(store) -> list[int]:
    out = []
    for key in sorted(store.list_keys("alerts/")):
        if key.endswith("_alerts.parquet"):
            out += store.read_table(key, columns=["candid"]).column("candid").to_pylist()
    return out


# -- the benchmark --------------------------------------------------------------------------------------------

class Bench:
    def __init__(self, options: Options, workdir: Path, report: Report):
        self.o = options
        self.work = workdir
        self.report = report
        self.started = time.monotonic()
        self.agreement: list[dict] = []
        self.tracking_uri = ""
        self.champion = None  # LoadedModel of the first round's model

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def dir(self, name: str) -> Path:
        path = self.work / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def agree(self, case: str, expected: list[int], product: list[int], baseline: list[int] | None = None) -> None:
        """Product and baseline must have kept every alert given to them, with the same candids."""
        n_base = len(baseline) if baseline is not None else 0
        entry = {"case": case, "expected_rows": len(expected), "product_rows": len(product),
                 "product_candids_match": sorted(product) == sorted(expected)}
        if baseline is not None:
            entry.update(baseline_rows=n_base, baseline_candids_match=sorted(baseline) == sorted(expected[:n_base]))
        self.agreement.append(entry)

    # -- data -------------------------------------------------------------------------------------------------
    def load_data(self) -> None:
        from skysift.bench import data

        t0 = time.perf_counter()
        self.ztf = data.ztf(self.o.root, self.o.n_alerts)
        self.rubin = data.rubin(self.o.root, self.o.n_rubin)
        self.report.environment["data_seconds"] = round(time.perf_counter() - t0, 2)
        self.report.environment["data"] = {
            "ztf": f"{len(data.ztf_base(self.o.root).payloads)} real ZTF 4.02 alerts (Fink distribution, "
                   f"{sum(map(len, self.ztf.payloads)) / len(self.ztf.payloads) / 1024:.1f} KB each) repeated to "
                   f"{len(self.ztf.payloads):,}",
            "rubin": f"real LSSTCam alerts (schema 9.0, 10.0) repeated to {sum(len(g.payloads) for g in self.rubin):,}",
        }

    # -- ingest -----------------------------------------------------------------------------------------------
    def run_ingest(self) -> None:
        from skysift.bench import baselines, data

        o = self.o
        n_polls = max(1, -(-len(self.ztf.payloads) // o.batch))
        fink = _fink_packets(self.ztf)

        def poll_all(name: str, stage, n: int, **kwargs) -> Row:
            rss: dict = {}
            with peak_rss(rss):
                seconds, lat, results = timed(lambda _: stage.poll(max_alerts=o.batch, **kwargs), range(n))
            rows = sum(r.n_alerts for r in results)
            return self.report.add(Row("ingest", name, rows, seconds, lat, rss["mb"]))

        # Fink's Kafka format (schemaless + schema in the key): the hourly poll's input
        self.fink_store_settings = _settings(self.dir("ingest-fink"))
        stage = _ingest_stage(self.fink_store_settings, MemorySource(fink))
        fink_row = poll_all("fink schemaless, no cutouts", stage, n_polls)
        self.fink_store = stage.store
        self.fink_ingest_seconds = fink_row.seconds

        # with cutouts: every alert in ONE poll, for the peak RSS of holding them all with their stamps
        cut_stage = _ingest_stage(_settings(self.dir("ingest-fink-cutouts")), MemorySource(fink))
        rss: dict = {}
        with peak_rss(rss):
            t0 = time.perf_counter()
            result = cut_stage.poll(max_alerts=len(fink), keep_cutouts=True)
            seconds = time.perf_counter() - t0
        cut_row = self.report.add(Row("ingest", f"fink, cutouts kept, all {len(fink):,} in one poll", result.n_alerts,
                                      seconds, [seconds], rss["mb"]))

        # Avro container files (one alert each, as ZTF serves them) through the replay source
        replay = self.dir("replay-ztf")
        for i, packet in enumerate(data.containers(self.ztf)):
            (replay / f"{i:06d}.avro").write_bytes(packet)
        avro_stage = _ingest_stage(_settings(self.dir("ingest-avro")))
        avro_row = poll_all("ZTF Avro containers (replay dir)", avro_stage, n_polls, replay_path=str(replay))

        # Rubin in Confluent wire format through the replay source
        rubin_dir = self.dir("replay-rubin")
        rubin_packets = [p for g in self.rubin for p in g.packets()]
        for i, packet in enumerate(rubin_packets):
            (rubin_dir / f"{i:06d}.bin").write_bytes(packet)
        rubin_stage = _ingest_stage(_settings(self.dir("ingest-rubin")))
        rubin_row = poll_all("Rubin Confluent wire (replay dir)", rubin_stage,
                             max(1, -(-len(rubin_packets) // o.batch)), replay_path=str(rubin_dir))

        self.agree("ingest fink", self.ztf.ids, _store_candids(stage.store))
        self.agree("ingest avro containers", self.ztf.ids, _store_candids(avro_stage.store))
        self.agree("ingest rubin", [i for g in self.rubin for i in g.ids], _store_candids(rubin_stage.store))
        self.agree("ingest fink with cutouts", self.ztf.ids, _store_candids(cut_stage.store))

        # baselines on the first n_baseline of the same packets
        base = data.Alerts(self.ztf.schema, self.ztf.payloads[:o.n_baseline], ids=self.ztf.ids[:o.n_baseline])
        out = self.dir("baseline") / "prototype_alerts.parquet"
        seconds, lat, res = timed(lambda chunk: baselines.prototype_ingest(chunk, base.schema, out),
                                  batches(base.payloads, o.batch))
        proto = self.report.add(Row("baseline", "prototype-style ingest (fastavro+pandas)", len(base.payloads),
                                    seconds, lat))
        self.prototype_frames = res
        self.agree("prototype-style ingest", self.ztf.ids, _store_candids(stage.store),
                   [int(c) for frame in res for c in frame["candid"]])
        seconds, lat, _ = timed(lambda chunk: baselines.fastavro_records(chunk, base.schema),
                                batches(base.payloads, o.batch))
        fastavro_row = self.report.add(Row("baseline", "fastavro per message (cached schema)", len(base.payloads),
                                           seconds, lat))
        containers = data.containers(base)
        seconds, lat, _ = timed(lambda chunk: baselines.fastavro_records(chunk), batches(containers, o.batch))
        fastavro_files = self.report.add(Row("baseline", "fastavro per container file", len(containers), seconds, lat))

        floor = {}
        for cutouts in (False, True):
            inputs = [baselines.rust_floor_input(data.Alerts(self.ztf.schema, chunk), "ztf", cutouts)
                      for chunk in batches(self.ztf.payloads, o.batch)[:FLOOR_BATCHES]]
            seconds, lat, res = timed(lambda args: baselines.rust_floor(*args), inputs)
            name = f"Rust floor (jetliner, one container){', cutouts' if cutouts else ''}"
            floor[cutouts] = self.report.add(Row("baseline", name, sum(res), seconds, lat))
        rubin_inputs = [baselines.rust_floor_input(g, "lsst", False) for g in self.rubin]
        seconds, lat, res = timed(lambda args: baselines.rust_floor(*args), rubin_inputs)
        rubin_floor = self.report.add(Row("baseline", "Rust floor, Rubin", sum(res), seconds, lat))
        rubin_base = [(g.packets()[:max(1, o.n_baseline // 5)], g.schema, len(g.prefix)) for g in self.rubin]
        seconds, lat, res = timed(lambda a: baselines.fastavro_records(a[0], a[1], a[2]), rubin_base)
        rubin_fastavro = self.report.add(Row("baseline", "fastavro per message, Rubin", sum(map(len, res)), seconds, lat))

        for row in (fink_row, avro_row):
            row.ratios = {"prototype-style": row.rate / proto.rate, "fastavro": row.rate / fastavro_row.rate,
                          "Rust floor": row.rate / floor[False].rate}
        avro_row.ratios["fastavro"] = avro_row.rate / fastavro_files.rate
        cut_row.ratios = {"prototype-style": cut_row.rate / proto.rate, "Rust floor (cutouts)": cut_row.rate / floor[True].rate}
        rubin_row.ratios = {"fastavro": rubin_row.rate / rubin_fastavro.rate, "Rust floor": rubin_row.rate / rubin_floor.rate}

        r = self.report
        self.ingest_checks = [
            r.check("ingest >= 5,000 alerts/s per core (4.02, no cutouts)", fink_row.rate, ">=", 5000, "alerts/s"),
            r.check("ingest >= 30x the prototype-style path", fink_row.ratios["prototype-style"], ">=", 30, "x"),
            r.check("ingest within 2x of the Rust batch-decode floor", floor[False].rate / fink_row.rate, "<=", 2,
                    "x slower than the floor"),
        ]
        if self.o.profile_misses and not all(c.passed for c in self.ingest_checks):
            fresh = _ingest_stage(_settings(self.dir("ingest-profile")), MemorySource(fink[:o.batch]))
            limits = profile_top(lambda: fresh.poll(max_alerts=o.batch))
            for c in self.ingest_checks:
                if not c.passed:
                    c.limits = limits

    # -- enrichment and features ------------------------------------------------------------------------------
    def run_features(self) -> None:
        from skysift.bench import baselines
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

    # -- active learning --------------------------------------------------------------------------------------
    def start_mlflow(self) -> None:
        """MLflow on a sqlite file in the work directory; artifacts under it (./mlruns of the work directory)."""
        logging.getLogger("alembic").setLevel(logging.WARNING)
        logging.getLogger("mlflow").setLevel(logging.WARNING)
        self.tracking_uri = f"sqlite:///{self.work / 'mlflow.db'}"

    def labelled(self):
        """Fink's labelled alerts through the product's decoder and features, with oracle labels (SIMBAD types)."""
        import pyarrow as pa

        from skysift.alerts.decode import packets_of
        from skysift.bench import data
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

        settings = _settings(self.dir(f"pool-{size}"), self.tracking_uri)
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
        from skysift.trainer.rounds import Trainer
        from skysift.trainer.settings import TrainerSettings

        t0 = time.perf_counter()
        settings, store = self.pool_store(size, labelled_features, labels, other_features)
        setup = time.perf_counter() - t0
        trainer = Trainer(settings, store, TrainerSettings(threads=1, mlflow_experiment_prefix="skysift-bench"))
        rss: dict = {}
        with peak_rss(rss):
            t0 = time.perf_counter()
            result = trainer.run_round(f"bench-pool-{size}", MODEL_TAG, force=True)
            wall = time.perf_counter() - t0
        phases = dict(result.timings)
        mlflow_s = phases.get("mlflow", 0.0)
        core = phases.get("fit_score_rank", 0.0) + phases.get("evaluate", 0.0)
        row = self.report.add(Row(
            "AL round", f"pool {size:,} rows", result.n_pool, wall - mlflow_s, [wall - mlflow_s], rss["mb"], unit="rows",
            note=(f"fit+evaluate+score+rank {core:.2f} s, load pool {phases.get('load_pool', 0):.2f} s, "
                  f"MLflow logging {mlflow_s:.2f} s (excluded), {result.n_train} train / {result.n_holdout} held out, "
                  f"holdout F1 {result.metrics.get('holdout_f1', float('nan')):.2f}"),
        ))
        row.phases = phases  # type: ignore[attr-defined]
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
        at_100k = next((r for r in rows if abs(r.n - 100_000) <= 1_000), None)
        if at_100k is not None:
            c = self.report.check("AL round on a 100k pool < 20 s excluding MLflow", at_100k.seconds, "<", 20, "s")
            if not c.passed:
                c.limits = [f"{k}: {v:.2f} s" for k, v in at_100k.phases.items()]  # type: ignore[attr-defined]
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

    # -- the hourly poll end to end ---------------------------------------------------------------------------
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

        settings = _settings(store_dir, self.tracking_uri)
        ingest = _ingest_stage(settings, MemorySource(packets))
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
        from skysift.bench import baselines

        o = self.o
        packets = _fink_packets(self.ztf)
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

    # -- scoring over gRPC ------------------------------------------------------------------------------------
    def run_inference(self) -> None:
        import gc

        import grpc

        from skysift.client import InferenceClient
        from skysift.inference import service as inference_service
        from skysift.inference.core import InferenceStage
        from skysift.inference.settings import (
            CsvSettings,
            InferenceSettings,
            SkyPortalSettings,
            SlackSettings,
        )
        from skysift.rpc import server as rpc_server
        from skysift.v1 import inference_pb2, inference_pb2_grpc

        settings = self.e2e_settings
        # The earlier sections left millions of objects in this process, which a service does not hold: without
        # this, a full garbage collection triggered by the scoring traverses them all (one 300-400 ms request).
        gc.collect()
        gc.freeze()
        candids = []
        for key in sorted(self.e2e_store.list_keys("features/")):
            candids += self.e2e_store.read_table(key, columns=["candid"]).column("candid").to_pylist()

        # in process: the scoring core alone, no transport
        stage = InferenceStage(settings, self.e2e_store, InferenceSettings(
            model_tags=[MODEL_TAG], csv=CsvSettings(path=None), skyportal=SkyPortalSettings(url=None),
            slack=SlackSettings(webhook_url=None, bot_token=None)))
        stage.index.refresh()
        stage.score_candids(candids[:10], [MODEL_TAG])

        def in_process(chunk):
            return inference_service.response(stage.score_candids(chunk, [MODEL_TAG]), packed_form=True)

        for size in (1, 1000):
            chunks = batches(candids, size)[:self.o.grpc_requests.get(size, 20)]
            seconds, lat, _ = timed(in_process, chunks)
            self.report.add(Row("inference", f"in process, packed, batches of {size}",
                                sum(map(len, chunks)), seconds, lat, note="score_candids + packed response, no transport"))

        port = _free_port()
        running = rpc_server.start("inference", lambda s: inference_service.register(s, settings), settings, port, None)
        try:
            channel = grpc.insecure_channel(f"127.0.0.1:{port}")
            stub = inference_pb2_grpc.InferenceStub(channel)

            def call(request):
                chunk, packed = request
                return stub.ScoreCandids(inference_pb2.ScoreCandidsRequest(
                    candids=chunk, model_tags=[MODEL_TAG], packed=packed), timeout=60)

            _wait_until_served(call, (candids[:1], True))
            checks = []
            for size, count in sorted(self.o.grpc_requests.items()):
                chunks = [candids[(i * size) % max(1, len(candids) - size):][:size] for i in range(count)]
                forms = self.score_forms(call, chunks)
                packed = forms["packed"]
                packed.ratios = {"per alert": packed.rate / forms["per alert"].rate}
                if size == 1:
                    checks.append(self.report.check("single-alert scoring p99 < 5 ms (gRPC, loopback)",
                                                    packed.percentile_ms(99), "<", 5, "ms"))
                if size == 1000:
                    checks.append(self.report.check("scoring >= 50,000 alerts/s in batches of 1000 (gRPC)", packed.rate,
                                                    ">=", 50_000, "alerts/s"))
            size = max(self.o.grpc_requests)
            chunks = [candids[(i * size) % max(1, len(candids) - size):][:size] for i in range(self.o.grpc_requests[size])]
            with InferenceClient(f"127.0.0.1:{port}") as client:
                client.score_candids(chunks[0], [MODEL_TAG])  # warm: its own channel connects on the first call
                seconds, lat, res = timed(lambda c: client.score_candids(c, [MODEL_TAG]), chunks)
            self.report.add(Row("inference", f"skysift.client (dicts), batches of {size}", sum(map(len, res)),
                                seconds, lat, note="score_candids: packed, turned into one dict per alert"))
            channel.close()
        finally:
            running.stop(0)
        missed = [c for c in checks if not c.passed]
        if self.o.profile_misses and missed:
            limits = profile_top(lambda: in_process(candids[:1000]))
            for c in missed:
                c.limits = ["server side of one packed 1000-alert request, in process:"] + limits

    def score_forms(self, call, chunks: list[list[int]]) -> dict[str, Row]:
        """The packed and per-alert forms on the same requests, alternating request by request (and which goes
        first) so that both meet the same load on the machine; a row each."""
        forms = {"packed": True, "per alert": False}
        for packed in forms.values():
            call((chunks[0], packed))  # warm
        requests = [(chunk, packed == (i % 2 == 0)) for i, chunk in enumerate(chunks) for packed in (True, False)]
        _, lat, res = timed(call, requests)
        rows = {}
        for form, packed in forms.items():
            mine = [(seconds, r) for (_, p), seconds, r in zip(requests, lat, res) if p == packed]
            n = sum(len(r.predictions) + sum(len(b.candids) for b in r.packed) for _, r in mine)
            rows[form] = self.report.add(Row("inference", f"gRPC ScoreCandids {form}, batches of {len(chunks[0])}", n,
                                             sum(s for s, _ in mine), [s for s, _ in mine]))
        return rows

    # -- 1 vs 2 feature workers -------------------------------------------------------------------------------
    def run_scaling(self) -> None:
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        keys = self.alerts_keys
        allowed = sorted(os.sched_getaffinity(0))
        rates = {}
        for workers in self.o.workers:
            cpus = ctx.Queue()
            for i in range(workers):
                cpus.put(allowed[i % len(allowed)] if workers > 1 else self.cpu)
            with ctx.Pool(workers, initializer=_worker_init,
                          initargs=(cpus, str(self.fink_store_settings.store_url), keys[0])) as pool:
                pool.map(_worker_ready, range(workers * 4), chunksize=1)
                t0 = time.perf_counter()
                rows = pool.map(_worker_features, keys * SCALING_ROUNDS, chunksize=1)
                seconds = time.perf_counter() - t0
            row = self.report.add(Row("scaling", f"features, {workers} worker process(es)", sum(rows), seconds,
                                      note=f"{len(keys)} batches of {self.o.batch:,} x{SCALING_ROUNDS}, a FeaturesStage "
                                           "per worker (parquet in and out), each worker pinned to its own core"))
            rates[workers] = row
        if 1 in rates:
            for w, row in rates.items():
                if w != 1:
                    row.ratios = {"1 worker": row.rate / rates[1].rate}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_until_served(call, candids, timeout_s: float = 60.0) -> None:
    """The server loads its model in the background: wait until a request succeeds."""
    import grpc

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            call(candids)
            return
        except grpc.RpcError as exc:
            if time.monotonic() > deadline or exc.code() not in (grpc.StatusCode.FAILED_PRECONDITION,
                                                                 grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.NOT_FOUND):
                raise
            time.sleep(0.2)


_WORKER_STAGE = None


def _worker_init(cpus, store_url: str, warm_key: str) -> None:
    """A feature worker: its own core, its own FeaturesStage (what a replica is), warmed on one batch."""
    global _WORKER_STAGE
    single_thread_env()
    os.sched_setaffinity(0, {cpus.get()})
    from skysift.features.core import FeaturesStage
    from skysift.features.settings import FeaturesSettings
    from skysift.store import open_store

    settings = _settings(Path(store_url))
    _WORKER_STAGE = FeaturesStage(settings, open_store(settings=settings), FeaturesSettings(threads=1))
    _WORKER_STAGE.process(warm_key)


def _worker_ready(_: int) -> bool:
    return _WORKER_STAGE is not None


def _worker_features(key: str) -> int:
    return _WORKER_STAGE.process(key).features.rows


def run(options: Options | None = None) -> Report:
    """Run the benchmark; the report is returned and, when ``options.out`` is set, written as JSON."""
    single_thread_env()
    o = options or Options()
    o.root = o.root.resolve()
    out = o.out.resolve() if o.out else None
    allowed = sorted(os.sched_getaffinity(0))
    cpu = o.cpu if o.cpu is not None else allowed[-1]
    report = Report(environment={
        "started": datetime.now(UTC).isoformat(timespec="seconds"), "cpu": cpu, "cpus": len(allowed),
        "loadavg": " ".join(Path("/proc/loadavg").read_text().split()[:3]) if Path("/proc/loadavg").exists() else "?",
        "python": platform.python_version(), "machine": platform.machine(),
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(o).items()},
    })
    work = Path(tempfile.mkdtemp(prefix="skysift-bench-"))
    previous_affinity, cwd = os.sched_getaffinity(0), os.getcwd()
    os.sched_setaffinity(0, {cpu})
    os.chdir(work)  # MLflow on sqlite puts artifacts under ./mlruns: keep them in the work directory
    bench = Bench(o, work, report)
    bench.cpu = cpu
    wanted = set(o.sections)
    steps = [("data", bench.load_data, True), ("ingest", bench.run_ingest, True),
             ("features", bench.run_features, bool(wanted - {"ingest"})),
             ("al", lambda: bench.run_al(final=False), bool(wanted & {"al", "e2e", "inference"})),
             ("e2e", bench.run_e2e, bool(wanted & {"e2e", "inference"})),
             ("al larger pools", lambda: bench.run_al(final=True), "al" in wanted),
             ("inference", bench.run_inference, "inference" in wanted),
             ("scaling", bench.run_scaling, "scaling" in wanted and len(allowed) > 1)]
    if "scaling" in wanted and len(allowed) < 2:
        report.skipped.append("1 vs 2 feature workers: only one CPU is available to this process")
    seconds = report.environment["section_seconds"] = {}
    try:
        for name, step, needed in steps:
            if needed:
                t0 = time.monotonic()
                step()
                seconds[name] = round(time.monotonic() - t0, 1)
    finally:
        os.chdir(cwd)
        os.sched_setaffinity(0, previous_affinity)
        report.environment["agreement"] = bench.agreement
        report.environment["total_seconds"] = round(bench.elapsed(), 1)
        shutil.rmtree(work, ignore_errors=True)
    bad = [a["case"] for a in bench.agreement if not a["product_candids_match"] or not a.get("baseline_candids_match", True)]
    if bad:
        report.notes.append(f"row counts or candids DISAGREE between product and baseline in: {', '.join(bad)}")
    if out:
        report.write_json(out)
    return report
