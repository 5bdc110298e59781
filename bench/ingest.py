"""Ingest: three formats, with and without cutouts, beside fastavro, the prototype's path and the Rust floor."""

from __future__ import annotations

import time

from bench.measure import batches, peak_rss, profile_top, timed
from bench.report import Row
from bench.stages import MemorySource, fink_packets, ingest_stage, rubin_packets, store_candids, store_settings

FLOOR_BATCHES = 5  # the decode floor runs on the first batches of the same packets (its rate is steady)


def _once(fn) -> tuple[float, int]:
    """(seconds, alerts) of one call of ``fn``, which returns its alerts."""
    t0 = time.perf_counter()
    n = fn()
    return time.perf_counter() - t0, n


def _row(section: str, case: str, runs: list[tuple[float, int]], rss_mb: float | None = None) -> Row:
    return Row(section, case, sum(n for _, n in runs), sum(t for t, _ in runs), [t for t, _ in runs], rss_mb)


class IngestSection:
    def run_ingest(self) -> None:
        from bench import baselines, data

        o = self.o
        n_polls = max(1, -(-len(self.ztf.payloads) // o.batch))
        fink = fink_packets(self.ztf)

        floor_rows: dict[str, Row] = {}

        def poll_all(name: str, stage, n: int, floor_name: str = "", floor_inputs=(), **kwargs) -> Row:
            """``n`` polls; with ``floor_inputs``, each poll is followed by the Rust floor's decode of one of them in
            turn (the row ``floor_name``), so that both sides of the floor ratio meet the same load: measured one
            after the other, seconds apart, they met loads 2-5x apart on this shared machine."""
            rss: dict = {}
            polls, floors = [], []
            with peak_rss(rss):
                for i in range(max(n, len(floor_inputs))):  # every floor input at least once
                    if i < n:
                        polls.append(_once(lambda: stage.poll(max_alerts=o.batch, **kwargs).n_alerts))
                    if floor_inputs:
                        floors.append(_once(lambda i=i: baselines.rust_floor(*floor_inputs[i % len(floor_inputs)])))
            if floors:
                floor_rows[floor_name] = self.report.add(_row("baseline", floor_name, floors))
            return self.report.add(_row("ingest", name, polls, rss["mb"]))

        # Fink's Kafka format (schemaless + schema in the key): the hourly poll's input
        ztf_floor = [baselines.rust_floor_input(data.Alerts(self.ztf.schema, chunk), "ztf", False)
                     for chunk in batches(self.ztf.payloads, o.batch)[:FLOOR_BATCHES]]
        self.fink_store_settings = store_settings(self.dir("ingest-fink"))
        stage = ingest_stage(self.fink_store_settings, MemorySource(fink))
        fink_row = poll_all("fink schemaless, no cutouts", stage, n_polls, "Rust floor (jetliner, one container)",
                            ztf_floor)
        self.fink_store = stage.store
        self.fink_ingest_seconds = fink_row.seconds

        # with cutouts: every alert in ONE poll, for the peak RSS of holding them all with their stamps
        cut_stage = ingest_stage(store_settings(self.dir("ingest-fink-cutouts")), MemorySource(fink))
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
        avro_stage = ingest_stage(store_settings(self.dir("ingest-avro")))
        avro_row = poll_all("ZTF Avro containers (replay dir)", avro_stage, n_polls, replay_path=str(replay))

        # Rubin in Confluent wire format through the replay source
        rubin_dir = self.dir("replay-rubin")
        rubin_wire = [p for g in self.rubin for p in g.packets()]
        for i, packet in enumerate(rubin_wire):
            (rubin_dir / f"{i:06d}.bin").write_bytes(packet)
        rubin_stage = ingest_stage(store_settings(self.dir("ingest-rubin")))
        rubin_row = poll_all("Rubin Confluent wire (replay dir)", rubin_stage,
                             max(1, -(-len(rubin_wire) // o.batch)), replay_path=str(rubin_dir))

        # the same Rubin packets as Kafka hands them over (from memory, like Fink's): the floor's comparison, which
        # the replay row's reading of 2,000 files (~35 µs each) would blur
        rubin_kafka = rubin_packets(self.rubin)
        rubin_kafka_stage = ingest_stage(store_settings(self.dir("ingest-rubin-kafka")), MemorySource(rubin_kafka))
        rubin_kafka_row = poll_all("Rubin Confluent wire (Kafka, from memory)", rubin_kafka_stage,
                                   max(1, -(-len(rubin_wire) // o.batch)), "Rust floor, Rubin",
                                   [baselines.rust_floor_input(g, "lsst", False) for g in self.rubin])

        self.agree("ingest fink", self.ztf.ids, store_candids(stage.store))
        self.agree("ingest rubin kafka", [i for g in self.rubin for i in g.ids], store_candids(rubin_kafka_stage.store))
        self.agree("ingest avro containers", self.ztf.ids, store_candids(avro_stage.store))
        self.agree("ingest rubin", [i for g in self.rubin for i in g.ids], store_candids(rubin_stage.store))
        self.agree("ingest fink with cutouts", self.ztf.ids, store_candids(cut_stage.store))

        # baselines on the first n_baseline of the same packets
        base = data.Alerts(self.ztf.schema, self.ztf.payloads[:o.n_baseline], ids=self.ztf.ids[:o.n_baseline])
        out = self.dir("baseline") / "prototype_alerts.parquet"
        seconds, lat, res = timed(lambda chunk: baselines.prototype_ingest(chunk, base.schema, out),
                                  batches(base.payloads, o.batch))
        proto = self.report.add(Row("baseline", "prototype-style ingest (fastavro+pandas)", len(base.payloads),
                                    seconds, lat))
        self.prototype_frames = res
        self.agree("prototype-style ingest", self.ztf.ids, store_candids(stage.store),
                   [int(c) for frame in res for c in frame["candid"]])
        seconds, lat, _ = timed(lambda chunk: baselines.fastavro_records(chunk, base.schema),
                                batches(base.payloads, o.batch))
        fastavro_row = self.report.add(Row("baseline", "fastavro per message (cached schema)", len(base.payloads),
                                           seconds, lat))
        containers = data.containers(base)
        seconds, lat, _ = timed(lambda chunk: baselines.fastavro_records(chunk), batches(containers, o.batch))
        fastavro_files = self.report.add(Row("baseline", "fastavro per container file", len(containers), seconds, lat))

        floor = {False: floor_rows["Rust floor (jetliner, one container)"]}  # measured beside the polls
        inputs = [baselines.rust_floor_input(data.Alerts(self.ztf.schema, chunk), "ztf", True)
                  for chunk in batches(self.ztf.payloads, o.batch)[:FLOOR_BATCHES]]
        seconds, lat, res = timed(lambda args: baselines.rust_floor(*args), inputs)
        floor[True] = self.report.add(Row("baseline", "Rust floor (jetliner, one container), cutouts", sum(res), seconds,
                                          lat))
        rubin_floor = floor_rows["Rust floor, Rubin"]
        rubin_base = [(g.packets()[:max(1, o.n_baseline // 5)], g.schema, len(g.prefix)) for g in self.rubin]
        seconds, lat, res = timed(lambda a: baselines.fastavro_records(a[0], a[1], a[2]), rubin_base)
        rubin_fastavro = self.report.add(Row("baseline", "fastavro per message, Rubin", sum(map(len, res)), seconds, lat))

        for row in (fink_row, avro_row):
            row.ratios = {"prototype-style": row.rate / proto.rate, "fastavro": row.rate / fastavro_row.rate,
                          "Rust floor": row.rate / floor[False].rate}
        avro_row.ratios["fastavro"] = avro_row.rate / fastavro_files.rate
        cut_row.ratios = {"prototype-style": cut_row.rate / proto.rate, "Rust floor (cutouts)": cut_row.rate / floor[True].rate}
        for row in (rubin_row, rubin_kafka_row):
            row.ratios = {"fastavro": row.rate / rubin_fastavro.rate, "Rust floor": row.rate / rubin_floor.rate}

        r = self.report
        self.ingest_checks = [
            r.check("ingest >= 5,000 alerts/s per core (4.02, no cutouts)", fink_row.rate, ">=", 5000, "alerts/s"),
            r.check("ingest >= 30x the prototype-style path", fink_row.ratios["prototype-style"], ">=", 30, "x"),
            r.check("ingest within 2x of the Rust batch-decode floor", floor[False].rate / fink_row.rate, "<=", 2,
                    "x slower than the floor"),
            r.check("Rubin ingest within 2x of its Rust floor (Kafka form)", rubin_floor.rate / rubin_kafka_row.rate,
                    "<=", 2, "x slower than the floor"),
        ]
        if self.o.profile_misses and not all(c.passed for c in self.ingest_checks):
            limits = {}
            for name, packets in (("ztf", fink), ("rubin", rubin_kafka)):
                fresh = ingest_stage(store_settings(self.dir(f"ingest-profile-{name}")), MemorySource(packets[:o.batch]))
                limits[name] = profile_top(lambda fresh=fresh: fresh.poll(max_alerts=o.batch))
            for c in self.ingest_checks:
                if not c.passed:
                    c.limits = limits["rubin" if c.target.startswith("Rubin") else "ztf"]
