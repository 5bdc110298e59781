"""Measuring one case: its rate and latencies, peak RSS, a profile of a miss; one thread everywhere."""

from __future__ import annotations

import cProfile
import os
import pstats
import re
import time
from contextlib import contextmanager
from pathlib import Path

# One core means one thread everywhere; polars reads its variable when first imported.
THREAD_ENV = {"POLARS_MAX_THREADS": "1", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
              "MKL_NUM_THREADS": "1", "RAYON_NUM_THREADS": "1"}


def single_thread_env() -> None:
    for name, value in THREAD_ENV.items():
        os.environ.setdefault(name, value)


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
