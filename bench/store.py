"""What grows with time on S3: a round's label loading over 10^6 label events, and the inference service's start-up
over a month of hourly features batches, on a real S3 server (SeaweedFS, loopback).

The inference start-up is a deployment's first start over the candid-index pieces the features stage keeps (one a
night), and, as the baseline, over the batches alone (every batch's candid column: before pieces, or before the
features stage has compacted).

The snapshot of 10^6 events is built directly (``labels.snapshot_table``: PUTting 10^6 event objects first would
take hours here); ~1,000 newer events are submitted as labellers do, so the round reads the snapshot and lists and
GETs only those. The code before snapshots GETs every event: it is measured on those 1,000 and extrapolated.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from bench.measure import profile_top
from bench.report import Row

LABEL_TARGET_S = 10.0  # a round over 10^6 label events loads them in < 10 s
STARTUP_TARGET_S = 5.0  # inference start-up over 30 nights of hourly batches < 5 s
FULL_LABELS = 1_000_000
FULL_NIGHTS = 30
BATCHES_A_NIGHT = 24


class StoreSection:
    def s3_settings(self, bucket: str):
        """Settings for a fresh bucket on the bench's S3 server (started on first use, stopped by the runner)."""
        from skysift import localservers
        from skysift.config import Settings
        from skysift.store.s3 import S3Store

        if getattr(self, "s3", None) is None:
            self.s3 = localservers.start_s3(self.dir("s3"))
            self.cleanups.append(self.s3.stop)
        env = self.s3.env
        settings = Settings(store_url=f"s3://{bucket}/skysift", s3_endpoint_url=env["SKYSIFT_S3_ENDPOINT_URL"],
                            s3_access_key_id=env["SKYSIFT_S3_ACCESS_KEY_ID"],
                            s3_secret_access_key=env["SKYSIFT_S3_SECRET_ACCESS_KEY"])
        S3Store(settings.store_url, settings).ensure_bucket()
        return settings

    def run_store(self) -> None:
        self.run_label_loading()
        self.run_inference_startup()

    def run_label_loading(self) -> None:
        from skysift.modeltags import get_tag
        from skysift.store import open_store
        from skysift.trainer.labels import (
            SNAPSHOTS_PREFIX,
            LabelEvent,
            LabelStore,
            event_key,
            label_conflicts,
            labels_digest,
            latest_of,
            snapshot_table,
        )

        o = self.o
        settings = self.s3_settings("bench-labels")
        store = open_store(settings=settings)
        listed_at = datetime.now(UTC) - timedelta(hours=1)
        first = listed_at - timedelta(days=365)
        labels = ("galactic", "extragalactic", "bogus", "real", "agn", "varstar")
        events = {}
        for i in range(o.n_label_events):  # a year of labels by five labellers, some candids labelled twice
            event = LabelEvent(candid=1_000_000 + i % (o.n_label_events * 9 // 10), label=labels[i % len(labels)],
                               user=f"labeller{i % 5}", object_id=f"ZTF25a{i:08d}", model_tag="galactic",
                               timestamp=first + timedelta(seconds=i * 30), source="human", event_id=f"{i:032x}")
            events[event_key(event)] = event
        table = snapshot_table(events).replace_schema_metadata({"skysift.listed_at": listed_at.isoformat()})
        store.write_table(f"{SNAPSHOTS_PREFIX}{listed_at:%Y%m%dT%H%M%S%fZ}_bench.parquet", table)
        del events, table
        LabelStore(store).submit([LabelEvent(candid=5_000_000 + i, label=labels[i % len(labels)], user="labeller9")
                                  for i in range(o.n_new_label_events)])
        n = o.n_label_events + o.n_new_label_events

        def round_loading():  # what a round reads: the events once, every candid's latest label and digest, conflicts
            events = LabelStore(open_store(settings=settings)).table()
            latest = latest_of(events, columns=["candid", "label", "event_id", "object_id"])
            labels_digest(latest)
            label_conflicts(events, get_tag("galactic"))
            return latest.num_rows, events.num_rows

        t0 = time.perf_counter()
        n_latest, n_history = round_loading()
        seconds = time.perf_counter() - t0
        row = self.report.add(Row(
            "labels", f"round's label loading, {n:,} events on S3", n, seconds, [seconds], unit="label events",
            note=f"newest snapshot ({o.n_label_events:,} events) + {o.n_new_label_events:,} newer events listed once "
                 f"and GET 16 at a time; {n_latest:,} candids; the read compacts them into a new snapshot"))
        assert n_history == n, (n_history, n)

        t0 = time.perf_counter()
        old = LabelStore(open_store(settings=settings), snapshots=False).latest()
        base_seconds = time.perf_counter() - t0
        per_event = base_seconds / o.n_new_label_events
        base = self.report.add(Row(
            "baseline", "one GET per label event (before snapshots)", o.n_new_label_events, base_seconds,
            [base_seconds], unit="label events",
            note=f"measured on the {o.n_new_label_events:,} event objects ({len(old):,} candids); at {n:,} events: "
                 f"{per_event * n:,.0f} s, extrapolated (not measured)"))
        row.ratios = {"one GET per event": row.rate / base.rate}
        if o.n_label_events < FULL_LABELS:  # the newer events' GETs do not shrink with the snapshot: no scaling
            self.report.skipped.append(f"label loading target: checked on 10^6 events only ({n:,} here)")
            return
        check = self.report.check(f"round's label loading over 10^6 events on S3 < {LABEL_TARGET_S:.0f} s", seconds,
                                  "<", LABEL_TARGET_S, "s")
        if o.profile_misses and not check.passed:
            check.limits = profile_top(round_loading)

    def run_inference_startup(self) -> None:
        import numpy as np
        import pyarrow as pa

        from skysift.features.candid_pieces import bring_up_to_date
        from skysift.inference.rows import CandidIndex
        from skysift.store import keys, open_store

        o = self.o
        settings = self.s3_settings("bench-startup")
        store = open_store(settings=settings)
        rows = self.startup_features()
        start = datetime(2025, 6, 1, tzinfo=UTC)
        n_batches = o.startup_nights * BATCHES_A_NIGHT
        stride = 10 ** 12  # batch b's candids: the real ones + b * stride (distinct, as a month of alerts is)
        candid = rows.column("candid").to_numpy()
        for b in range(n_batches):
            batch = rows.set_column(0, "candid", pa.array(candid + (b + 1) * stride, pa.int64()))
            store.write_table(str(keys.new_batch("features", "ztf", start + timedelta(hours=b))), batch)

        t0 = time.perf_counter()  # what the features stage's runs leave: every night's candid-index piece
        pieces = bring_up_to_date(store, nights_a_run=o.startup_nights)
        compact_seconds = time.perf_counter() - t0
        assert len(pieces) == o.startup_nights, (len(pieces), o.startup_nights)

        def start_up():  # a deployment's first start (a restart reads the same)
            index = CandidIndex(open_store(settings=settings))
            return index, index.refresh()

        t0 = time.perf_counter()
        index, n_indexed = start_up()
        seconds = time.perf_counter() - t0
        assert n_indexed == n_batches, (n_indexed, n_batches)
        found = index.rows(np.array([candid[0] + stride, candid[-1] + n_batches * stride]))  # a lookup after it
        assert len(found.candid) == 2
        row = self.report.add(Row(
            "inference", f"start-up: candid index over {o.startup_nights} nights x {BATCHES_A_NIGHT} batches on S3",
            n_batches * rows.num_rows, seconds, [seconds], unit="candids",
            note=f"{n_batches} features batches of {rows.num_rows:,} real feature rows each; a first start GETs one "
                 f"candid-index piece a night ({index.read_threads} at a time), which the features stage keeps "
                 f"(compacting all {o.startup_nights} nights at once took {compact_seconds:.2f} s)"))
        for key in pieces:
            store.delete(key)
        t0 = time.perf_counter()
        _, n_indexed = start_up()
        base_seconds = time.perf_counter() - t0
        assert n_indexed == n_batches, (n_indexed, n_batches)
        base = self.report.add(Row(
            "baseline", "start-up reading every batch's candid column (before pieces)", n_batches * rows.num_rows,
            base_seconds, [base_seconds], unit="candids",
            note=f"{n_batches} GETs, {index.read_threads} at a time: a deployment whose features stage has not "
                 "compacted yet"))
        row.ratios = {"every batch's candid column": row.rate / base.rate}
        if o.startup_nights < FULL_NIGHTS:
            self.report.skipped.append(f"inference start-up target: checked on 30 nights only ({o.startup_nights} here)")
            return
        check = self.report.check(f"inference start-up over 30 nights of hourly batches on S3 < {STARTUP_TARGET_S:.0f} s",
                                  seconds, "<", STARTUP_TARGET_S, "s")
        if o.profile_misses and not check.passed:
            check.limits = profile_top(start_up)

    def startup_features(self):
        """Real feature rows: those the features section computed, else the ZTF alerts through the product's chain."""
        import pyarrow as pa

        from bench.stages import fink_packets
        from skysift.chain import features_of_packets

        tables = getattr(self, "feature_tables", None)
        if tables:
            return pa.concat_tables(tables).slice(0, self.o.batch)
        (ztf,) = features_of_packets(fink_packets(self.ztf)[:self.o.batch]).surveys
        return ztf.features
