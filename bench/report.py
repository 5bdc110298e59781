"""The benchmark's results: measured rows, ratios against baselines, targets (PASS/MISS), the table and the JSON.

A target that is missed is printed as MISS with what limits it (the top of a cProfile of one batch), never
hidden; a measurement that did not run is listed as skipped with the reason.
"""

from __future__ import annotations

import json
import math
import operator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class Row:
    """One measured case: ``n`` items (alerts, or pool rows) in ``seconds``, with per-batch/request latencies."""

    section: str
    case: str
    n: int
    seconds: float
    latencies: list[float] = field(default_factory=list)
    peak_rss_mb: float | None = None
    ratios: dict[str, float] = field(default_factory=dict)  # baseline case -> this rate / its rate
    unit: str = "alerts"
    note: str = ""

    @property
    def rate(self) -> float:
        return self.n / self.seconds if self.seconds > 0 else math.inf

    def percentile_ms(self, q: float) -> float | None:
        return float(np.percentile(self.latencies, q) * 1000) if self.latencies else None

    def to_dict(self) -> dict:
        out = {k: v for k, v in asdict(self).items() if k != "latencies"}
        out.update(rate_per_s=self.rate, p50_ms=self.percentile_ms(50), p99_ms=self.percentile_ms(99),
                   n_latencies=len(self.latencies))
        return out


OPS = {">=": operator.ge, "<=": operator.le, "<": operator.lt, ">": operator.gt}


@dataclass
class Check:
    """A target of the issue, against one measured value."""

    target: str  # e.g. "ingest >= 5,000 alerts/s per core"
    value: float
    op: str
    threshold: float
    unit: str
    limits: list[str] = field(default_factory=list)  # what limits it (profile lines), when missed

    @property
    def passed(self) -> bool:
        return bool(OPS[self.op](self.value, self.threshold))

    def to_dict(self) -> dict:
        return {**asdict(self), "status": "PASS" if self.passed else "MISS"}


@dataclass
class Report:
    environment: dict = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        return row

    def row(self, section: str, case: str) -> Row | None:
        return next((r for r in self.rows if r.section == section and r.case == case), None)

    def check(self, target: str, value: float, op: str, threshold: float, unit: str) -> Check:
        c = Check(target, float(value), op, float(threshold), unit)
        self.checks.append(c)
        return c

    def to_dict(self) -> dict:
        return {"environment": self.environment, "rows": [r.to_dict() for r in self.rows],
                "checks": [c.to_dict() for c in self.checks], "skipped": self.skipped, "notes": self.notes}

    def write_json(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2, default=_jsonable) + "\n")

    def lines(self) -> list[str]:
        env = self.environment
        title = (f"skysift bench  {env.get('started', '')}  pinned to CPU {env.get('cpu')} of {env.get('cpus')}, "
                 f"load average {env.get('loadavg', '?')}  (other work on the machine makes numbers noisy)")
        out = [title, ""]
        header = (f"{'section':<10} {'case':<44} {'n':>8} {'rate/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'RSS MB':>7}  ratios")
        out += [header, "-" * len(header)]
        for r in self.rows:
            ratios = ", ".join(f"{v:,.1f}x {k}" for k, v in r.ratios.items())
            out.append(f"{r.section:<10} {r.case[:44]:<44} {r.n:>8,} {r.rate:>10,.0f} {_fmt(r.percentile_ms(50)):>8} "
                       f"{_fmt(r.percentile_ms(99)):>8} {_fmt(r.peak_rss_mb, 0):>7}  {ratios}")
            if r.note:
                out.append(f"{'':<11}  {r.note}")
        out += ["", "targets:"]
        for c in self.checks:
            status = "PASS" if c.passed else "MISS"
            out.append(f"  [{status}] {c.target}: measured {c.value:,.2f} {c.unit}")
            out += [f"         limited by: {line}" for line in c.limits]
        for s in self.skipped:
            out.append(f"  [SKIP] {s}")
        out += [f"note: {n}" for n in self.notes]
        return out


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _jsonable(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    return str(value)
