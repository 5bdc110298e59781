"""The run behind `skysift bench`, on one pinned core, in a temporary directory; each section is its own module.

Order: ingest (three formats, with and without cutouts) → enrichment and features → the first active-learning
round (its model becomes the champion in a local MLflow on sqlite) → the hourly poll end to end → rounds on
larger pools while the time budget allows → gRPC scoring → 1 vs 2 feature workers and Kafka ingest consumers. Every product figure has its
baselines beside it, run in the same process on the same bytes (baselines on the first ``n_baseline`` of them:
at ~100 alerts/s the prototype's path would take minutes on 10,000).

Stages are built once and reused, as a running service does; one-off costs (imports, MLflow, model loading)
are not in the rates. Peak RSS is the process's high-water mark, reset before each case (Linux clear_refs).
"""

from __future__ import annotations

import os
import platform
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from bench import features_v2
from bench.al import ActiveLearningSection
from bench.e2e import EndToEndSection
from bench.features import FeaturesSection
from bench.inference import InferenceSection
from bench.ingest import IngestSection
from bench.measure import single_thread_env
from bench.report import Report
from bench.scaling import ScalingSection
from bench.store import StoreSection

SECTIONS = ("ingest", "features", "al", "e2e", "inference", "store", "scaling")

CHECKOUT = Path(__file__).resolve().parents[1]  # bench/ is a top-level directory of the checkout


@dataclass
class Options:
    root: Path = CHECKOUT  # the checkout holding tests/data/alerts
    out: Path | None = CHECKOUT / "bench" / "results.json"
    n_alerts: int = 10_000  # ZTF alerts per product case
    batch: int = 1_000  # alerts per poll (the prototype's hourly poll)
    n_rubin: int = 2_000
    n_baseline: int = 1_000  # alerts given to fastavro and the prototype-style ingest and features
    n_ebv_baseline: int = 200  # alerts given to the per-row E(B-V) lookup (~11 ms each)
    n_e2e_baseline: int = 300  # alerts given to the prototype's whole hour
    pools: tuple[int, ...] = (10_000, 100_000, 1_000_000)
    grpc_requests: dict[int, int] = field(default_factory=lambda: {1: 400, 100: 60, 1000: 20})
    p99_runs: int = 10  # runs of the one-alert gRPC case, each with its p99 (the target: < 5 ms in 9 of 10)
    workers: tuple[int, ...] = (1, 2)
    n_label_events: int = 1_000_000  # label events in the snapshot a round reads (store section)
    n_new_label_events: int = 1_000  # events submitted after it, each its own object
    startup_nights: int = 30  # nights of 24 hourly features batches the inference start-up indexes
    budget_s: float = 250.0  # optional work (the largest pools) is skipped when it would overrun this
    cpu: int | None = None  # the core to pin to (default: the last allowed one)
    sections: tuple[str, ...] = SECTIONS
    profile_misses: bool = True


class Bench(IngestSection, FeaturesSection, ActiveLearningSection, EndToEndSection, InferenceSection,
            StoreSection, ScalingSection):
    """The sections share the loaded data, the stores and the report: each is a class of its own module."""

    def __init__(self, options: Options, workdir: Path, report: Report):
        self.o = options
        self.work = workdir
        self.report = report
        self.started = time.monotonic()
        self.agreement: list[dict] = []
        self.tracking_uri = ""
        self.champion = None  # LoadedModel of the first round's model
        self.cleanups: list = []  # servers a section started, stopped when the run ends

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
        from bench import data

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
             ("features v2", lambda: features_v2.run(bench), bool(wanted - {"ingest"})),  # bench/features_v2.py
             ("al", lambda: bench.run_al(final=False), bool(wanted & {"al", "e2e", "inference"})),
             ("e2e", bench.run_e2e, bool(wanted & {"e2e", "inference"})),
             ("al larger pools", lambda: bench.run_al(final=True), "al" in wanted),
             ("inference", bench.run_inference, "inference" in wanted),
             ("store", bench.run_store, "store" in wanted),
             ("scaling", bench.run_scaling, "scaling" in wanted and len(allowed) > 1)]
    if "scaling" in wanted and len(allowed) < 2:
        report.skipped.append("1 vs 2 feature workers and ingest consumers: only one CPU is available to this process")
    seconds = report.environment["section_seconds"] = {}
    try:
        for name, step, needed in steps:
            if needed:
                t0 = time.monotonic()
                step()
                seconds[name] = round(time.monotonic() - t0, 1)
    finally:
        for stop in bench.cleanups:
            stop()
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
