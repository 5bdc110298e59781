"""1 vs 2 feature workers, each its own process on its own core."""

from __future__ import annotations

import os
import time
from pathlib import Path

from bench.measure import single_thread_env
from bench.report import Row
from bench.stages import store_settings

SCALING_ROUNDS = 3  # each alerts batch is featurised this many times in the 1-vs-2-workers run


class ScalingSection:
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


_WORKER_STAGE = None


def _worker_init(cpus, store_url: str, warm_key: str) -> None:
    """A feature worker: its own core, its own FeaturesStage (what a replica is), warmed on one batch."""
    global _WORKER_STAGE
    single_thread_env()
    os.sched_setaffinity(0, {cpus.get()})
    from skysift.features.settings import FeaturesSettings
    from skysift.features.stage import FeaturesStage
    from skysift.store import open_store

    settings = store_settings(Path(store_url))
    _WORKER_STAGE = FeaturesStage(settings, open_store(settings=settings), FeaturesSettings(threads=1))
    _WORKER_STAGE.process(warm_key)


def _worker_ready(_: int) -> bool:
    return _WORKER_STAGE is not None


def _worker_features(key: str) -> int:
    return _WORKER_STAGE.process(key).features.rows
