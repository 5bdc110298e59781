"""The CI bench gate's verdict: ratios against the committed reference, with the tolerance that lets run-to-run noise
through and fails a stage that became half as fast. The short run itself is `make bench-gate` (CI, after `make
test`): three repetitions take over a minute on this shared machine."""

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
