"""`skysift bench` on a handful of real alerts: the report's structure and that product and baselines agree on
rows and candids (never on speed: these runs are far too small, and the machine is shared)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import fastavro
import pytest

from bench import data, runner

ROOT = Path(__file__).resolve().parents[2]


def tiny(tmp_path: Path, sections: tuple[str, ...], **extra) -> runner.Options:
    return runner.Options(root=ROOT, out=tmp_path / "results.json", n_alerts=30, batch=10, n_rubin=8,
                          n_baseline=10, n_ebv_baseline=3, n_e2e_baseline=5, pools=(1_000,),
                          grpc_requests={1: 3, 1000: 1}, workers=(1, 2), sections=sections, profile_misses=False,
                          n_label_events=2_000, n_new_label_events=20, startup_nights=1,
                          **extra)


def test_copies_keep_the_payload_and_get_new_ids():
    base = data.ztf_base(ROOT)
    copies = data.repeat(base, len(base.payloads) + 2, union=True)
    parsed = fastavro.parse_schema(json.loads(base.schema))
    original = fastavro.schemaless_reader(io.BytesIO(base.payloads[1]), parsed, None)
    copy = fastavro.schemaless_reader(io.BytesIO(copies.payloads[len(base.payloads) + 1]), parsed, None)
    assert copy["candid"] == original["candid"] + data.ID_STRIDE
    assert {k: v for k, v in copy.items() if k != "candid"} == {k: v for k, v in original.items() if k != "candid"}
    assert len(set(copies.ids)) == len(copies.ids) == len(copies.payloads)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """One small run of the ingest and features sections, shared by the tests below (~10 s)."""
    tmp = tmp_path_factory.mktemp("bench")
    return runner.run(tiny(tmp, ("ingest", "features"))), tmp / "results.json"


def test_ingest_and_features_report(small):
    report, path = small
    written = json.loads(path.read_text())

    sections = {r["section"] for r in written["rows"]}
    assert {"ingest", "baseline", "enrich", "features"} <= sections
    for row in written["rows"]:
        assert row["n"] > 0 and row["rate_per_s"] > 0 and row["p50_ms"] is not None, row["case"]
    fink = next(r for r in written["rows"] if r["case"] == "fink schemaless, no cutouts")
    assert set(fink["ratios"]) == {"prototype-style", "fastavro", "Rust floor"}
    assert {c["status"] for c in written["checks"]} <= {"PASS", "MISS"}
    assert any(c["target"].startswith("ingest >= 5,000") for c in written["checks"])
    assert any(c["target"].startswith("features >= 20x") for c in written["checks"])
    assert any(line.startswith("targets:") for line in report.lines())


def test_product_and_baselines_agree_on_rows_and_candids(small):
    report, _ = small
    agreement = {a["case"]: a for a in report.environment["agreement"]}
    assert {"ingest fink", "ingest avro containers", "ingest rubin", "prototype-style ingest", "features"} <= set(agreement)
    for case, entry in agreement.items():
        assert entry["product_rows"] == entry["expected_rows"], case
        assert entry["product_candids_match"], case
        assert entry.get("baseline_candids_match", True), case
    assert agreement["prototype-style ingest"]["baseline_rows"] == 10


@pytest.mark.slow
def test_whole_bench_on_a_few_alerts(tmp_path):
    """Every section, MLflow and gRPC included (tens of seconds: slow)."""
    report = runner.run(tiny(tmp_path, runner.SECTIONS))
    sections = {r.section for r in report.rows}
    assert {"AL round", "e2e", "inference", "labels", "scaling"} <= sections
    assert report.row("labels", "round's label loading, 2,020 events on S3").n == 2_020
    assert any(r.case.startswith("start-up: candid index over 1 nights") for r in report.rows)
    agreement = {a["case"]: a for a in report.environment["agreement"]}
    for survey in ("ZTF", "Rubin"):
        entry = agreement[f"end to end {survey}"]
        assert entry["product_candids_match"] and entry["baseline_candids_match"] and entry["baseline_rows"] > 0
    assert any(c.target.startswith("Rubin end to end >= 1,500") for c in report.checks)
    assert any(c.target.startswith("single-alert scoring") for c in report.checks)
    scored = {r.case.rsplit(",", 1)[0]: r.n for r in report.rows if r.case.startswith("gRPC ScoreCandids")}
    assert scored["gRPC ScoreCandids packed"] == scored["gRPC ScoreCandids per alert"] > 0  # both answered every alert
    runs = report.row("inference", "gRPC ScoreCandids packed, one alert, 10 runs")
    assert runs.n == 10 * 3 and runs.note.count(",") == 9  # 10 runs of 3 requests, a p99 each
    assert any(c.target == "single-alert scoring p99 < 5 ms in >= 9 of 10 runs (gRPC, loopback)" for c in report.checks)
    for consumers in (1, 2):  # every alert, once, however many consumers share the topic
        assert report.row("scaling", f"ingest, {consumers} Kafka consumer(s), one group").n == 30
        assert agreement[f"ingest scaling, {consumers} consumer(s)"]["product_candids_match"]
    assert "15 from" in report.row("scaling", "ingest, 2 Kafka consumer(s), one group").note  # a partition each
    assert any(n.startswith("ingest scaling: 2 consumers of one group ran") for n in report.notes)


def test_the_second_core_note_names_what_limited_the_consumers():
    from bench.scaling import ScalingRun, second_core_note

    one = ScalingRun(seconds=10.0, consumer_cpu=9.5, broker_cpu=1.0, loadavg="0.5", fetch_seconds=3.0)
    cpu_bound = ScalingRun(seconds=5.5, consumer_cpu=9.8, broker_cpu=1.0, loadavg="0.5", fetch_seconds=1.0)
    fetching = ScalingRun(seconds=9.0, consumer_cpu=4.0, broker_cpu=1.0, loadavg="0.5", fetch_seconds=6.0)
    crowded = ScalingRun(seconds=10.0, consumer_cpu=4.0, broker_cpu=1.0, loadavg="7.0", fetch_seconds=2.0)
    assert second_core_note(1.82, one, cpu_bound).startswith("ingest scaling: 2 consumers of one group ran 1.82x")
    assert "(89% of 2 core(s))" in second_core_note(1.82, one, cpu_bound)
    assert "Limited by CPU" in second_core_note(1.82, one, cpu_bound)
    assert "Limited by the Kafka fetches: Tansu 0.6.0" in second_core_note(1.1, one, fetching)
    assert "Limited by waiting for a core" in second_core_note(1.0, one, crowded)


def test_feature_set_2_and_offline_cross_match_rows_have_their_baselines(small):
    report, _ = small
    cases = {r.case: r for r in report.rows}
    for case, baseline in (("E(B-V) + offline cross-match, no Sherlock", "per-alert astropy"),
                           ("feature set 2, ZTF (all bands, context)", "per-alert"),
                           ("feature set 2, Rubin (all bands, context)", "per-alert")):
        assert cases[case].n > 0 and set(cases[case].ratios) == {baseline}, case
    assert cases["feature set 2, Rubin (all bands, context)"].n == 8
    targets = {c.target for c in report.checks}
    assert {"features v2 >= 10,000 alerts/s per core (ZTF)",
            "enrichment with the offline cross-match >= 20,000 alerts/s per core"} <= targets
