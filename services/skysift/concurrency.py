"""Blocking calls run a few at a time: on S3 or an HTTP API a request costs far more in waiting than in CPU."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

In = TypeVar("In")
Out = TypeVar("Out")


def threaded_map(fn: Callable[[In], Out], items: Sequence[In], threads: int) -> list[Out]:
    """``[fn(item) for item in items]``, up to ``threads`` calls at a time, in order; one item needs no pool."""
    if len(items) <= 1:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(threads, len(items))) as pool:
        return list(pool.map(fn, items))
