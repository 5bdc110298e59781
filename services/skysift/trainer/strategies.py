"""Query strategies: which unlabelled alerts a round asks people to label next, and why.

Each strategy is a small class in :data:`REGISTRY`: its ``name``, what it ``needs`` (the model's
probabilities, a committee's, the pool's features) and a ``why`` line for each queued alert. A new strategy
is one class with the :func:`register` decorator. Strategies that need no model (``random``, ``diverse``)
can pick the first batch, before any label exists.

A queue is the top of an explicit ranking (highest score first), ties broken by a seeded random draw so equal
scores do not fall back to arrival order, and it holds at most one alert per object when object ids are given.

For a binary model, least-confident, margin and entropy are monotone functions of |p - 0.5| and give the
same ranking; they are kept because their scores read differently in the queue. The others use different
information: a committee's disagreement, the distance between alerts (diversity), the density of the pool
around an alert, and the decision threshold chosen by cross-validation (rare classes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from skysift.errors import InvalidArgument
from skysift.trainer.selection import density, interleave, k_centre, top

PROBABILITIES, COMMITTEE, FEATURES = "probabilities", "committee", "features"
# the strategy rounds use unless told; chosen from the evidence in docs/active-learning.md
DEFAULT = "diverse_uncertainty"
ALIASES = {"least_confident": "uncertainty", "least-confident": "uncertainty", "qbc": "committee"}
DIVERSITY_POOL = 10  # batch diversity picks among the DIVERSITY_POOL x n most uncertain alerts
COLD_START_SAMPLE = 20_000  # k-centre cold start runs over a seeded sample of this many pool rows (bounds its cost)


@dataclass
class QueryInput:
    """What a strategy may look at; ``proba`` rows are pool rows, ``features`` standardised (NaN as 0)."""

    proba: np.ndarray | None = None  # (n, classes): P(negative), P(positive) when binary; None before a model exists
    member_proba: np.ndarray | None = None  # (members, n, classes)
    features: np.ndarray | None = None  # (n, d)
    labelled_features: np.ndarray | None = None  # (m, d): the training rows, for distances to what is known
    object_ids: np.ndarray | None = None  # at most one queued alert per object when given
    threshold: float = 0.5  # the model's decision threshold
    positive_class: str = "positive"
    classes: tuple[str, ...] = ()  # the model's class names, for a multi-class model's reasons
    density: np.ndarray | None = None  # each row's density in the pool, when measured outside (a streamed pool)

    def __len__(self) -> int:
        for part in (self.proba, self.features, self.object_ids):
            if part is not None:
                return len(part)
        if self.member_proba is not None:
            return self.member_proba.shape[1]
        raise ValueError("a query needs the pool's probabilities, features or object ids")


@dataclass
class Ranked:
    """The queue-worthy part of a ranking: positions into the pool, their scores, and why each was picked."""

    index: np.ndarray
    score: np.ndarray
    reason: list[str]


class Strategy:
    """Score every pool row (higher: ask sooner) and say why; ``select`` may override the plain top-n."""

    name: ClassVar[str]
    needs: ClassVar[frozenset[str]] = frozenset({PROBABILITIES})
    binary_only: ClassVar[bool] = False  # ranks on the positive class's probability (no multi-class models)

    @property
    def needs_model(self) -> bool:
        return bool(self.needs & {PROBABILITIES, COMMITTEE})

    def scores(self, q: QueryInput, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError

    def why(self, q: QueryInput, i: int, score: float) -> str:
        raise NotImplementedError

    def select(self, q: QueryInput, n: int, rng: np.random.Generator) -> Ranked:
        s = self.scores(q, rng)
        idx = top(s, n, rng, q.object_ids)
        return Ranked(idx, s[idx], [self.why(q, int(i), float(s[i])) for i in idx])


REGISTRY: dict[str, Strategy] = {}


def register(cls: type[Strategy]) -> type[Strategy]:
    REGISTRY[cls.name] = cls()
    return cls


def _p(q: QueryInput, i: int) -> str:
    """The probability a reason quotes: the positive class's, or a multi-class model's two most probable."""
    if q.proba is None:
        return ""
    if q.proba.shape[1] == 2:
        return f"p({q.positive_class})={q.proba[i, 1]:.2f}"
    first, second = np.argsort(q.proba[i])[::-1][:2]
    names = q.classes or tuple(map(str, range(q.proba.shape[1])))
    return f"p({names[first]})={q.proba[i, first]:.2f}, p({names[second]})={q.proba[i, second]:.2f}"


@register
class Random(Strategy):
    name = "random"
    needs = frozenset()

    def scores(self, q, rng):
        return rng.random(len(q))

    def why(self, q, i, score):
        return "random pick"


@register
class Uncertainty(Strategy):
    name = "uncertainty"

    def scores(self, q, rng):
        return least_confident(q.proba)

    def why(self, q, i, score):
        return f"least confident: {_p(q, i)}"


@register
class Margin(Strategy):
    name = "margin"

    def scores(self, q, rng):
        return margin(q.proba)

    def why(self, q, i, score):
        return f"small margin ({1 - score:.2f}): {_p(q, i)}"


@register
class Entropy(Strategy):
    name = "entropy"

    def scores(self, q, rng):
        return entropy(q.proba)

    def why(self, q, i, score):
        return f"high entropy ({score:.2f} bits): {_p(q, i)}"


@register
class Committee(Strategy):
    name = "committee"
    needs = frozenset({PROBABILITIES, COMMITTEE})

    def scores(self, q, rng):
        if q.member_proba is None:
            raise InvalidArgument("the committee strategy needs the members' probabilities")
        return committee_disagreement(q.member_proba)

    def why(self, q, i, score):
        return f"committee disagreement {score:.3f} bits: {_p(q, i)}"


@register
class Diverse(Strategy):
    """Cold start: a batch spread over the feature space (k-centre greedy on standardised features).

    Needs no model, so it can choose the first batch: a random batch of 30 often holds one class only when a
    class is rare, a spread-out one reaches the corners where rare classes live.
    """

    name = "diverse"
    needs = frozenset({FEATURES})

    def select(self, q, n, rng):
        candidates = rng.permutation(len(q))[:COLD_START_SAMPLE]
        picked, distance = k_centre(q.features[candidates], n, rng, q.labelled_features,
                                    None if q.object_ids is None else q.object_ids[candidates])
        idx = candidates[picked]
        return Ranked(idx, distance, [f"diverse: {d:.2f} from the nearest alert already chosen" for d in distance])


@register
class DiverseUncertainty(Strategy):
    """Batch diversity: the DIVERSITY_POOL x n most uncertain alerts, then k-centre greedy among them, so one
    batch holds no near-duplicates (ten alerts of one faint blob teach the model one thing)."""

    name = "diverse_uncertainty"
    needs = frozenset({PROBABILITIES, FEATURES})

    def select(self, q, n, rng):
        s = least_confident(q.proba)
        candidates = top(s, DIVERSITY_POOL * n, rng, q.object_ids)
        picked, distance = k_centre(q.features[candidates], n, rng, q.labelled_features, None,
                                    first=0)  # the most uncertain alert first
        idx = candidates[picked]
        return Ranked(idx, s[idx], [f"uncertain ({_p(q, int(i))}) and {d:.2f} from the batch's others"
                                    for i, d in zip(idx, distance)])


@register
class ThresholdBalanced(Strategy):
    """Rare classes: uncertainty around the model's decision threshold (chosen by cross-validation), with
    the batch split evenly between alerts just above and just below it, so the rare side is asked about
    as often as the common one."""

    name = "balanced"
    binary_only = True

    def scores(self, q, rng):
        return threshold_uncertainty(q.proba, q.threshold)

    def select(self, q, n, rng):
        s = self.scores(q, rng)
        above = q.proba[:, 1] >= q.threshold
        sides = [top(np.where(side, s, -np.inf), n, rng, q.object_ids) for side in (above, ~above)]
        sides = [ix[np.isfinite(s[ix])] for ix in sides]
        idx = np.array(interleave(sides, n, q.object_ids), dtype=np.int64)
        return Ranked(idx, s[idx], [self.why(q, int(i), float(s[i])) for i in idx])

    def why(self, q, i, score):
        side = "above" if q.proba[i, 1] >= q.threshold else "below"
        return f"near the decision threshold {q.threshold:.2f} ({side}): {_p(q, i)}"


@register
class DensityWeighted(Strategy):
    """Density-weighted uncertainty: uncertainty times how typical the alert is of the pool (its closeness to
    its nearest pool neighbours), so that isolated outliers are not asked about before whole uncertain groups."""

    name = "density"
    needs = frozenset({PROBABILITIES, FEATURES})

    def select(self, q, n, rng):
        typical = density(q.features, rng) if q.density is None else q.density
        s = threshold_uncertainty(q.proba, q.threshold) * typical
        idx = top(s, n, rng, q.object_ids)
        return Ranked(idx, s[idx], [f"uncertain in a dense region (density {typical[i]:.2f}): {_p(q, int(i))}"
                                    for i in idx])


STRATEGIES = (*REGISTRY, "default")  # the built-in names (a strategy registered later is known to check_strategy)


def check_strategy(name: str) -> str:
    name = ALIASES.get(name, name)
    if name != "default" and name not in REGISTRY:
        raise InvalidArgument(f"unknown strategy {name!r}; expected one of {', '.join([*REGISTRY, 'default'])}")
    return name


def get(name: str) -> Strategy:
    name = check_strategy(name)
    return REGISTRY[DEFAULT if name == "default" else name]


def query(strategy: str, n: int, rng: np.random.Generator, q: QueryInput) -> Ranked:
    """Rank the pool with ``strategy`` and return its top ``n`` (fewer when the pool is smaller)."""
    n = min(n, len(q))
    if n <= 0:
        return Ranked(np.empty(0, dtype=np.int64), np.empty(0), [])
    return get(strategy).select(q, n, rng)


# -- scores ----------------------------------------------------------------------------------------------------
def least_confident(proba: np.ndarray) -> np.ndarray:
    """1 - max_k p_k: 0 when the model is sure, 0.5 at p = 0.5 for two classes."""
    return 1.0 - proba.max(axis=1)


def margin(proba: np.ndarray) -> np.ndarray:
    """1 - (p_first - p_second), so that a small margin scores high."""
    top2 = np.sort(proba, axis=1)[:, -2:]
    return 1.0 - (top2[:, 1] - top2[:, 0])


def entropy(proba: np.ndarray) -> np.ndarray:
    """Shannon entropy in bits."""
    p = np.clip(proba, 1e-12, 1.0)
    return -(p * np.log2(p)).sum(axis=1)


def threshold_uncertainty(proba: np.ndarray, threshold: float) -> np.ndarray:
    """1 at the decision threshold, 0 at p = 0 or 1 (least-confident rescaled around ``threshold``).

    A multi-class model has no threshold: least-confident rescaled to [0, 1] (1 when all k classes are equal).
    """
    k = proba.shape[1]
    if k > 2:
        return least_confident(proba) * k / (k - 1)
    p = proba[:, 1]
    return 1.0 - np.where(p >= threshold, (p - threshold) / max(1 - threshold, 1e-9), (threshold - p) / max(threshold, 1e-9))


def committee_disagreement(member_proba: np.ndarray) -> np.ndarray:
    """Mean KL divergence of each member from the consensus (McCallum & Nigam), in bits.

    ``member_proba`` has shape (members, n, classes); 0 when every member agrees.
    """
    p = np.clip(member_proba, 1e-12, 1.0)
    consensus = p.mean(axis=0)
    return (p * (np.log2(p) - np.log2(consensus)[None])).sum(axis=2).mean(axis=0)
