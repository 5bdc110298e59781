"""How a strategy turns scores into a batch: the top of a ranking (one alert per object), k-centre greedy over
standardised features, the pool's density around an alert. Plain numpy (and scikit-learn's neighbours)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

DENSITY_REFERENCE = 2000  # pool rows a density is measured against (a seeded sample of a large pool)


def density(features: np.ndarray, rng: np.random.Generator, neighbours: int = 10) -> np.ndarray:
    """1 / (1 + mean distance to the nearest pool rows), measured against a seeded sample of the pool."""
    return density_against(features[rng.permutation(len(features))[:DENSITY_REFERENCE]], features, neighbours)


def density_against(reference: np.ndarray, features: np.ndarray, neighbours: int = 10) -> np.ndarray:
    """1 / (1 + mean distance from each row of ``features`` to its nearest ``reference`` rows, the nearest one
    dropped (the row itself when the reference holds it): a streamed pool measures each batch against one sample."""
    from sklearn.neighbors import NearestNeighbors

    k = min(neighbours + 1, len(reference))
    distance, _ = NearestNeighbors(n_neighbors=k).fit(reference).kneighbors(features)
    return 1.0 / (1.0 + distance[:, 1:].mean(axis=1)) if k > 1 else np.ones(len(features))


def top(scores: np.ndarray, n: int, rng: np.random.Generator, object_ids: np.ndarray | None = None) -> np.ndarray:
    """Indices of the ``n`` highest scores, best first; ties ordered by a seeded random draw; with
    ``object_ids``, only each object's best alert.

    Uses a partial sort (widened while objects repeat), so ranking a 1M-row pool for a queue of 10 stays cheap.
    """
    n = min(n, len(scores))
    if n <= 0:
        return np.empty(0, dtype=np.int64)
    tiebreak = rng.random(len(scores))
    want = n
    while True:
        if want < len(scores):
            # keep every row tied with the want-th best, then order them exactly
            threshold = np.partition(scores, len(scores) - want)[len(scores) - want]
            candidates = np.flatnonzero(scores >= threshold)
        else:
            candidates = np.arange(len(scores))
        ordered = candidates[np.lexsort((tiebreak[candidates], -scores[candidates]))]
        if object_ids is None:
            return ordered[:n]
        kept = _one_per_object(ordered, object_ids)[:n]
        if len(kept) == n or len(candidates) == len(scores):
            return kept
        want *= 4


def _one_per_object(ordered: Iterable[int], object_ids: np.ndarray) -> np.ndarray:
    seen, kept = set(), []
    for i in ordered:
        obj = object_ids[i]
        if obj and obj in seen:  # an empty id is unknown, not one object
            continue
        seen.add(obj)
        kept.append(i)
    return np.array(kept, dtype=np.int64)


def interleave(lists: list[np.ndarray], n: int, object_ids: np.ndarray | None) -> list[int]:
    """Take from each list in turn (one above the threshold, one below, ...) until ``n`` or all are used."""
    out, seen, cursors = [], set(), [0] * len(lists)
    while len(out) < n and any(c < len(ix) for c, ix in zip(cursors, lists)):
        for k, ix in enumerate(lists):
            while cursors[k] < len(ix) and len(out) < n:
                i = int(ix[cursors[k]])
                cursors[k] += 1
                obj = object_ids[i] if object_ids is not None else None
                if obj and obj in seen:
                    continue
                seen.add(obj)
                out.append(i)
                break
    return out


def k_centre(X: np.ndarray, n: int, rng: np.random.Generator, labelled: np.ndarray | None = None,
             object_ids: np.ndarray | None = None, first: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Greedy k-centre: repeatedly take the row farthest from everything chosen (and labelled) so far.

    Returns the chosen row positions and each one's distance to the nearest earlier choice when it was taken.
    ``first`` fixes the first row (else the one farthest from the labelled rows, or a seeded random one).
    """
    n = min(n, len(X))
    nearest = np.full(len(X), np.inf)
    if labelled is not None and len(labelled):
        for chunk in np.array_split(labelled, max(1, len(labelled) // 512)):
            nearest = np.minimum(nearest, _distances(X, chunk).min(axis=1))
    picked, gaps = [], []
    blocked = np.zeros(len(X), dtype=bool)
    for step in range(n):
        if step == 0 and first is not None:
            i = first
        elif step == 0 and not np.isfinite(nearest).any():
            i = int(rng.integers(len(X)))
        else:
            i = int(np.argmax(np.where(blocked, -np.inf, nearest)))
        if blocked[i]:
            break
        picked.append(i)
        gaps.append(float(nearest[i]) if np.isfinite(nearest[i]) else 0.0)
        blocked[i] = True
        if object_ids is not None and object_ids[i]:
            blocked |= object_ids == object_ids[i]
        nearest = np.minimum(nearest, _distances(X, X[i:i + 1])[:, 0])
    return np.array(picked, dtype=np.int64), np.array(gaps)


def _distances(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Euclidean distances between the rows of A and of B, without an (a, b, d) intermediate."""
    squared = (A ** 2).sum(axis=1)[:, None] + (B ** 2).sum(axis=1)[None, :] - 2.0 * A @ B.T
    return np.sqrt(np.maximum(squared, 0.0))


def standardise(pool: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Robust scaling by the pool's median and inter-quartile range (after a signed log, since light-curve
    features span decades), NaN as 0 (the median), clipped to +-10: distances then weigh features alike."""
    import warnings

    squashed = [np.sign(x) * np.log1p(np.abs(x)) for x in (np.asarray(a, dtype=float) for a in (pool, *others))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns (ebv before enrichment)
        centre = np.nan_to_num(np.nanmedian(squashed[0], axis=0)) if len(squashed[0]) else 0.0
        scale = (np.nanpercentile(squashed[0], 75, axis=0) - np.nanpercentile(squashed[0], 25, axis=0)
                 if len(squashed[0]) else np.ones(squashed[0].shape[1]))
    scale = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)
    return [np.clip(np.nan_to_num((x - centre) / scale), -10, 10) for x in squashed]
