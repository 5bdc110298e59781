"""Ranking a pool too large to hold: score it batch by batch and keep only each ranking's top candidates.

A whole-pool query (:func:`skysift.trainer.model.fit_and_query`) holds every pool row's features,
probabilities and the committee's probabilities at once (~700 bytes a row in a round). Here the pool arrives as
frames in pool order (one features file at a time); each frame is scored and only the rows that can still reach
the queue are kept: the top ``k`` of every ranking the strategy makes (``k`` a few times what the queue, one alert
per object, and the diversity step need). The strategy's own ``select`` then runs on those candidates, so the
queue, scores and reasons come from the same code as the whole pool's.

The queue is the whole pool's for the same seed: the seeded draws a strategy makes over the whole pool (tie
breaks, ``random``'s scores, the cold-start and density permutations) are drawn batch by batch from the same
generator (a PCG64 stream advanced past the draws before it), and replayed to ``select`` for the candidates.
One approximation, above ``STATS_SAMPLE`` rows only: the standardisation of features (median and inter-quartile
range, for the strategies that measure distances) is taken from a seeded sample of the pool instead of all of it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from skysift import errors
from skysift.trainer import selection, strategies
from skysift.trainer.forest import CompiledForest

STATS_SAMPLE = 200_000  # pool rows the standardisation is measured on (all of them in a smaller pool)
CANDIDATES_PER_QUEUED = 4  # each ranking keeps this many x (the rows its strategy's select looks at) to start


Frames = Callable[[], Iterable[pd.DataFrame]]  # the pool in order, a frame at a time; callable again for a re-read


@dataclass
class Streamed:
    """The queue over a streamed pool: ``ranked.index`` are positions in ``candidates`` (the kept pool rows,
    with a ``position`` column: the row's position in the pool), ``proba`` the candidates' probabilities."""

    ranked: strategies.Ranked
    candidates: pd.DataFrame
    proba: np.ndarray | None


@dataclass
class Pool:
    """A streamed pool: its frames, its size (rows, known before ranking: the seeded draws depend on it), the
    feature columns the model reads and the column holding object ids ('' when none)."""

    frames: Frames
    size: int
    columns: list[str]
    object_column: str = "objectId"

    def __len__(self) -> int:
        return self.size

    def positioned(self) -> Iterator[tuple[int, pd.DataFrame]]:
        start = 0
        for frame in self.frames():
            yield start, frame
            start += len(frame)
        if start != self.size:
            raise errors.FailedPrecondition(f"the pool changed while it was ranked ({start} rows, expected {self.size})")

    def objects(self, frame: pd.DataFrame) -> np.ndarray | None:
        return frame[self.object_column].to_numpy(dtype=object) if self.object_column in frame else None


@dataclass
class Scorer:
    """What scores a frame: the fitted model (and committee), its decision threshold, and the classes' names.
    The models score through their compiled leaf tables (:mod:`.forest`: the same probabilities, faster)."""

    model: object | None = None
    members: list | None = None
    threshold: float = 0.5
    positive_class: str = "positive"
    classes: tuple[str, ...] = ()
    _forests: dict = field(default_factory=dict, init=False, repr=False)  # id(model) -> its CompiledForest or None

    def query_input(self, X: pd.DataFrame | np.ndarray, object_ids: np.ndarray | None) -> strategies.QueryInput:
        """``X``: the model's feature columns, in its order."""
        q = strategies.QueryInput(object_ids=object_ids, threshold=self.threshold,
                                  positive_class=self.positive_class, classes=self.classes)
        if isinstance(X, pd.DataFrame):
            expected = getattr(self.model if self.model is not None else (self.members or [None])[0],
                               "feature_names_in_", None)
            if expected is not None and list(X.columns) != list(expected):
                raise ValueError(f"the pool's columns {list(X.columns)} are not the model's {list(expected)}")
            X = X.to_numpy(dtype=np.float64)
        if self.model is not None:
            q.proba = self._proba(self.model, X)
        if self.members:
            q.member_proba = np.stack([self._proba(m, X) for m in self.members])
        return q

    def _proba(self, model, X: np.ndarray) -> np.ndarray:
        if id(model) not in self._forests:
            self._forests[id(model)] = CompiledForest.compile(model)
        if (forest := self._forests[id(model)]) is not None:
            return forest.predict_proba(X)
        return model.predict_proba(pd.DataFrame(X, columns=getattr(model, "feature_names_in_", None)))


class _Replay:
    """A Generator for ``select`` on the candidates: answers its ``random`` and ``permutation`` calls with the
    whole pool's draws (restricted to the candidates, in order), and any other draw from the round's generator."""

    def __init__(self, rng: np.random.Generator, random: list[np.ndarray] = (), permutation: list[np.ndarray] = ()):
        self._rng, self._random, self._permutation = rng, list(random), list(permutation)

    def random(self, size):
        return self._pop(self._random, size)

    def permutation(self, size):
        return self._pop(self._permutation, size)

    def integers(self, *args, **kwargs):
        return self._rng.integers(*args, **kwargs)

    @staticmethod
    def _pop(answers: list[np.ndarray], size) -> np.ndarray:
        if not answers or len(answers[0]) != size:
            raise RuntimeError("a strategy drew differently on the candidates than on the streamed pool")
        return answers.pop(0)


def _draws(rng: np.random.Generator, n_streams: int, size: int) -> list[np.random.Generator]:
    """Generators that continue ``rng`` where its k-th draw of ``size`` doubles would start (k < n_streams)."""
    out = []
    for k in range(n_streams):
        g = copy.deepcopy(rng)
        g.bit_generator.advance(k * size)
        out.append(g)
    rng.bit_generator.advance(n_streams * size)  # the round's generator ends where the whole pool's would
    return out


class _Kept:
    """The best ``k`` rows of one ranking seen so far (score high first, then its tie break low first)."""

    def __init__(self, k: int, tiebreak: str = "_tb"):
        self.k, self.tiebreak, self.rows = k, tiebreak, None

    def add(self, frame: pd.DataFrame, columns: dict[str, np.ndarray], score: np.ndarray) -> None:
        """Keep the best of a frame's rows (``columns``: per-row arrays added to the kept rows, the tie breaks
        among them); only the frame's own best ``k`` are copied out of it."""
        best = _best(score, columns[self.tiebreak], self.k)
        rows = frame.iloc[best].assign(**{name: values[best] for name, values in columns.items()}, _score=score[best])
        if self.rows is not None:
            rows = pd.concat([self.rows, rows], ignore_index=True)
            rows = rows.iloc[_best(rows["_score"].to_numpy(), rows[self.tiebreak].to_numpy(), self.k)]
        self.rows = rows

    def complete(self, need: int, pool_size: int, object_column: str) -> bool:
        """Whether the kept rows hold the ranking's first ``need`` (one per object) for sure."""
        if self.rows is None or len(self.rows) >= pool_size or len(self.rows) < self.k:
            return True
        if object_column not in self.rows:
            return True
        ids = self.rows[object_column].to_numpy(dtype=object)
        return len(set(ids[ids != ""])) + int((ids == "").sum()) >= need


def streamed_query(pool: Pool, strategy: str, n: int, rng: np.random.Generator, scorer: Scorer,
                   labelled: pd.DataFrame | None = None, sample_seed: int = 0) -> Streamed:
    """The queue ``strategies.query`` would give over the whole pool, holding only candidates (see the module doc).

    ``labelled`` are the training rows' features (distances to what is known); ``sample_seed`` seeds the
    standardisation sample of a pool over STATS_SAMPLE rows.
    """
    chosen = strategies.get(strategy)
    n = min(n, pool.size)
    if n <= 0:
        return Streamed(strategies.Ranked(np.empty(0, dtype=np.int64), np.empty(0), []), pd.DataFrame(), None)
    if chosen.needs_model and scorer.model is None:
        raise errors.InvalidArgument(f"strategy {strategy!r} needs a model")
    features = strategies.FEATURES in chosen.needs
    sample = _sample_positions(pool.size, sample_seed) if features else None
    stats, prefetched = None, None
    if isinstance(chosen, (strategies.DensityWeighted, strategies.Diverse)):  # rows drawn before any ranking
        stats, prefetched = _prefetch(pool, chosen, rng, sample)
    X_labelled = labelled[pool.columns].to_numpy() if labelled is not None else np.empty((0, len(pool.columns)))
    if isinstance(chosen, strategies.Diverse):
        return _cold_start(pool, chosen, n, rng, prefetched, stats, selection.standardise(stats, X_labelled)[1],
                           scorer)
    need = strategies.DIVERSITY_POOL * n if isinstance(chosen, strategies.DiverseUncertainty) else n
    k = CANDIDATES_PER_QUEUED * need
    start = copy.deepcopy(rng)
    while True:
        rng.bit_generator.state = copy.deepcopy(start.bit_generator.state)
        kept, draws, sampled = _scan(pool, chosen, rng, scorer, k, prefetched, stats,
                                     sample if features and stats is None else False)
        if all(r.complete(need, pool.size, pool.object_column) for r in kept) or k >= pool.size:
            break
        k *= 4  # objects repeated among the kept rows: keep more
    stats = sampled if stats is None else stats
    candidates = pd.concat([r.rows for r in kept]).drop_duplicates("position").sort_values("position")
    candidates = candidates.reset_index(drop=True)
    q = scorer.query_input(candidates[pool.columns], pool.objects(candidates))
    if features:
        q.features, q.labelled_features = selection.standardise(stats, candidates[pool.columns].to_numpy(),
                                                                X_labelled)[1:]
    if q.proba is None and q.object_ids is None:
        q.object_ids = np.full(len(candidates), "", dtype=object)  # only the candidates' number matters to random
    if "_density" in candidates:
        q.density = candidates["_density"].to_numpy()
    replay = _Replay(rng, [candidates[name].to_numpy() for name in draws])
    ranked = chosen.select(q, n, replay)
    return Streamed(ranked, candidates.drop(columns=[c for c in candidates if c.startswith("_")]), q.proba)


def _scan(pool: Pool, chosen: strategies.Strategy, rng: np.random.Generator, scorer: Scorer, k: int,
          prefetched: pd.DataFrame | None, stats: np.ndarray | None, sample: np.ndarray | None | bool
          ) -> tuple[list[_Kept], list[str], np.ndarray | None]:
    """One pass: each frame scored, each ranking's top ``k`` kept; returns them, the draws select will make and,
    unless ``sample`` is False, the standardisation sample's feature rows (see :func:`_sample_positions`)."""
    if isinstance(chosen, strategies.DensityWeighted):
        rng.permutation(pool.size)  # the whole pool's reference draw (made in _prefetch from a copy)
        reference = selection.standardise(stats, prefetched[pool.columns].to_numpy())[1]
    if isinstance(chosen, strategies.Random):
        draws = ["_random", "_tb"]
    elif isinstance(chosen, strategies.ThresholdBalanced):
        draws = ["_tb", "_tb_below"]
    else:
        draws = ["_tb"]
    streams = dict(zip(draws, _draws(rng, len(draws), pool.size)))
    kept = [_Kept(k, tiebreak) for tiebreak in (draws if isinstance(chosen, strategies.ThresholdBalanced) else ["_tb"])]
    sampled = []
    for start, frame in pool.positioned():
        X = frame[pool.columns].to_numpy(dtype=np.float64)
        if sample is not False:
            sampled.append(_sampled(X, start, sample))
        q = scorer.query_input(X, pool.objects(frame))
        columns = {"position": np.arange(start, start + len(frame)),
                   **{name: g.random(len(frame)) for name, g in streams.items()}}
        if isinstance(chosen, strategies.Random):
            kept[0].add(frame, columns, columns["_random"])
        elif isinstance(chosen, strategies.ThresholdBalanced):
            s = chosen.scores(q, rng)
            above = q.proba[:, 1] >= q.threshold
            kept[0].add(frame, columns, np.where(above, s, -np.inf))
            kept[1].add(frame, columns, np.where(~above, s, -np.inf))
        elif isinstance(chosen, strategies.DensityWeighted):
            typical = selection.density_against(reference, selection.standardise(stats, X)[1])
            kept[0].add(frame, {**columns, "_density": typical},
                        strategies.threshold_uncertainty(q.proba, q.threshold) * typical)
        elif isinstance(chosen, strategies.DiverseUncertainty):
            kept[0].add(frame, columns, strategies.least_confident(q.proba))
        elif type(chosen).select is strategies.Strategy.select:
            kept[0].add(frame, columns, chosen.scores(q, rng))
        else:
            raise errors.InvalidArgument(f"strategy {chosen.name!r} has no streamed form; rank a smaller pool")
    return kept, draws, (np.concatenate(sampled) if sampled else np.empty((0, len(pool.columns))))


def _best(score: np.ndarray, tiebreak: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` best rows, best first: score high first, then tie break low first (a partial
    sort: every row tied with the k-th score is ordered exactly)."""
    if len(score) > k:
        candidates = np.flatnonzero(score >= np.partition(score, len(score) - k)[len(score) - k])
    else:
        candidates = np.arange(len(score))
    return candidates[np.lexsort((tiebreak[candidates], -score[candidates]))][:k]


def _sample_positions(size: int, seed: int) -> np.ndarray | None:
    """The pool positions the standardisation is measured on: a seeded sample of STATS_SAMPLE rows, or None
    (every row) in a smaller pool."""
    if size <= STATS_SAMPLE:
        return None
    return np.sort(np.random.default_rng(seed).choice(size, STATS_SAMPLE, replace=False))


def _sampled(X: np.ndarray, start: int, sample: np.ndarray | None) -> np.ndarray:
    """The rows of a frame starting at pool position ``start`` that ``sample`` holds."""
    if sample is None:
        return X
    lo, hi = np.searchsorted(sample, [start, start + len(X)])
    return X[sample[lo:hi] - start]


def _prefetch(pool: Pool, chosen: strategies.Strategy, rng: np.random.Generator, sample: np.ndarray | None
              ) -> tuple[np.ndarray, pd.DataFrame]:
    """One pass for the strategies that draw rows by position before they rank (density's reference, the cold
    start's k-centre sample): those rows, in the order drawn, and the standardisation sample."""
    size = selection.DENSITY_REFERENCE if isinstance(chosen, strategies.DensityWeighted) else strategies.COLD_START_SAMPLE
    wanted = copy.deepcopy(rng).permutation(pool.size)[:size]
    sampled, fetched = [], []
    for start, frame in pool.positioned():
        positions = np.arange(start, start + len(frame))
        sampled.append(_sampled(frame[pool.columns].to_numpy(), start, sample))
        hit = np.isin(positions, wanted)
        fetched.append(frame[hit].assign(position=positions[hit]))
    rows = pd.concat(fetched).set_index("position", drop=False).loc[wanted].reset_index(drop=True)
    return np.concatenate(sampled), rows


def _cold_start(pool: Pool, chosen: strategies.Strategy, n: int, rng: np.random.Generator, sample: pd.DataFrame,
                stats: np.ndarray, labelled_std: np.ndarray, scorer: Scorer) -> Streamed:
    """k-centre over the seeded sample of the pool: the only rows the cold start looks at."""
    rng.permutation(pool.size)  # the whole pool's draw of that sample (taken from a copy in _prefetch)
    q = strategies.QueryInput(object_ids=pool.objects(sample), threshold=scorer.threshold,
                              positive_class=scorer.positive_class, classes=scorer.classes)
    q.features = selection.standardise(stats, sample[pool.columns].to_numpy())[1]
    q.labelled_features = labelled_std
    ranked = chosen.select(q, n, _Replay(rng, permutation=[np.arange(len(sample))]))
    return Streamed(ranked, sample, None)
