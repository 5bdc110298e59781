"""The CI bench gate's verdict: ratios against the committed reference, with the tolerance that lets run-to-run noise
through and fails a stage that became half as fast, and its retries: only a section with a ratio below the tolerance
is measured again, and a ratio's best counts. The short run itself is `make bench-gate` (`.ci/run`, after the tests):
the sections' runs are given here as recorded ratios, so the verdict's logic is checked without minutes of bench."""

from __future__ import annotations

import json

from bench import gate
from bench.report import Report, Row


def test_a_stage_at_half_its_speed_fails_the_gate_and_noise_does_not():
    reference = json.loads(gate.REFERENCE.read_text())
    assert reference and all(v > 0 for v in reference.values())
    assert gate.regressions(dict(reference), reference) == []
    noisy = {name: value * 0.75 for name, value in reference.items()}  # a busy machine: 25 % off everywhere
    assert gate.regressions(noisy, reference) == []
    name = next(n for n in reference if n.startswith("ingest / fink schemaless"))
    halved = {**reference, name: reference[name] / 2}
    (failure,) = gate.regressions(halved, reference)
    assert failure.startswith(name) and f"below {gate.MIN_FRACTION:.0%}" in failure
    missing = {k: v for k, v in reference.items() if k != name}
    assert gate.regressions(missing, reference) == [f"{name}: not measured (reference {reference[name]:.2f}x)"]


def test_the_gate_names_each_ratio_by_section_case_and_baseline():
    report = Report(rows=[Row("ingest", "fink", 1000, 0.2, ratios={"fastavro": 4.0, "Rust floor": 0.4}),
                          Row("baseline", "fastavro", 100, 0.08)])
    assert gate.ratios(report, gated=None) == {"ingest / fink / fastavro": 4.0, "ingest / fink / Rust floor": 0.4}
    assert gate.ratios(report, gated=("ingest / fink / fastavro",)) == {"ingest / fink / fastavro": 4.0}


def test_the_reference_holds_every_gated_ratio_of_the_sections_the_gate_runs():
    reference = json.loads(gate.REFERENCE.read_text())
    assert set(reference) == set(gate.GATED)
    assert {name.split(" / ")[0] for name in reference} == set(gate.options().sections) == {"ingest", "features"}


def recorded_runs(runs_of: dict[str, list[dict[str, float]]]):
    """A stand-in for one short bench run per call: each section's next recorded ratios, and the sections asked."""
    asked: list[tuple[str, ...]] = []

    def run(sections):
        asked.append(sections)
        found = {}
        for section in sections:
            found.update(runs_of[section].pop(0))
        return found, []
    return run, asked


def test_a_section_below_the_tolerance_is_measured_again_and_its_best_counts():
    reference = {"ingest / fink / fastavro": 4.0, "features / compute / pandas": 200.0}
    unlucky, fine = {"ingest / fink / fastavro": 1.5}, {"ingest / fink / fastavro": 3.5}
    run, asked = recorded_runs({"ingest": [unlucky, fine], "features": [{"features / compute / pandas": 190.0}]})
    measured = gate.measure(reference, run=run)
    assert asked == [("features", "ingest"), ("ingest",)]  # features passed at once: not run again
    assert measured.best == {"ingest / fink / fastavro": 3.5, "features / compute / pandas": 190.0}
    lines = gate.verdict_lines(measured, reference)
    assert [line.split()[0] for line in lines] == ["PASS", "PASS"] and "best of 2 runs" in lines[1]


def test_a_regression_in_every_run_is_a_miss_after_every_retry():
    reference = {"ingest / fink / fastavro": 4.0}
    halved = [{"ingest / fink / fastavro": r} for r in (2.0, 1.9, 2.1, 1.8, 2.05)]
    run, asked = recorded_runs({"ingest": halved})
    measured = gate.measure(reference, run=run)
    assert len(asked) == 1 + gate.RETRIES
    (line,) = gate.verdict_lines(measured, reference)
    assert line.startswith("MISS ingest / fink / fastavro: 2.10x") and "best of 5 runs" in line
