"""Query strategies: score every unlabelled alert, then rank by that score (highest first).

The prototype computed an uncertainty score and then sampled in arrival order; here the queue is the top of
an explicit ranking, with ties broken by a seeded random draw so equal scores do not fall back to arrival order.

For a binary model, least-confident, margin and entropy are monotone functions of |p - 0.5| and therefore
give the same ranking; they are kept apart because they differ for multi-class models and because their
scores read differently in the queue. The committee strategy is the one that uses different information:
the disagreement of a bagged ensemble (query by committee).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from skysift.errors import InvalidArgument

STRATEGIES = ("random", "uncertainty", "margin", "entropy", "committee")
ALIASES = {"least_confident": "uncertainty", "least-confident": "uncertainty", "qbc": "committee"}


def check_strategy(name: str) -> str:
    name = ALIASES.get(name, name)
    if name not in STRATEGIES:
        raise InvalidArgument(f"unknown strategy {name!r}; expected one of {', '.join(STRATEGIES)}")
    return name


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


def committee_disagreement(member_proba: np.ndarray) -> np.ndarray:
    """Mean KL divergence of each member from the consensus (McCallum & Nigam), in bits.

    ``member_proba`` has shape (members, n, classes); 0 when every member agrees.
    """
    p = np.clip(member_proba, 1e-12, 1.0)
    consensus = p.mean(axis=0)
    return (p * (np.log2(p) - np.log2(consensus)[None])).sum(axis=2).mean(axis=0)


@dataclass
class Ranked:
    """The queue-worthy part of a ranking: positions into the pool, their scores, and the reason text."""

    index: np.ndarray
    score: np.ndarray
    reason: list[str]


def score(strategy: str, proba: np.ndarray | None, member_proba: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
    """Scores for each pool row under ``strategy`` (higher: ask sooner)."""
    strategy = check_strategy(strategy)
    if strategy == "random":
        n = len(proba) if proba is not None else len(member_proba[0])
        return rng.random(n)
    if strategy == "committee":
        if member_proba is None:
            raise InvalidArgument("the committee strategy needs the members' probabilities")
        return committee_disagreement(member_proba)
    return {"uncertainty": least_confident, "margin": margin, "entropy": entropy}[strategy](proba)


def top(scores: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of the ``n`` highest scores, best first; ties ordered by a seeded random draw.

    Uses a partial sort, so ranking a 1M-row pool for a queue of 10 stays cheap.
    """
    n = min(n, len(scores))
    if n == 0:
        return np.empty(0, dtype=np.int64)
    tiebreak = rng.random(len(scores))
    if n < len(scores):
        # keep every row tied with the n-th best, then order them exactly
        threshold = np.partition(scores, len(scores) - n)[len(scores) - n]
        candidates = np.flatnonzero(scores >= threshold)
    else:
        candidates = np.arange(len(scores))
    order = np.lexsort((tiebreak[candidates], -scores[candidates]))
    return candidates[order[:n]]


def reasons(strategy: str, score_values: np.ndarray, proba: np.ndarray | None, positive_class: str) -> list[str]:
    """One line per queued alert telling the labeller why it was picked."""
    strategy = check_strategy(strategy)
    out = []
    for i, s in enumerate(score_values):
        p = f"p({positive_class})={proba[i, 1]:.2f}" if proba is not None else ""
        text = {
            "random": "random pick",
            "uncertainty": f"least confident: {p}",
            "margin": f"small margin ({1 - s:.2f}): {p}",
            "entropy": f"high entropy ({s:.2f} bits): {p}",
            "committee": f"committee disagreement {s:.3f} bits: {p}",
        }[strategy]
        out.append(text)
    return out


def query(strategy: str, n: int, rng: np.random.Generator, proba: np.ndarray | None = None,
          member_proba: np.ndarray | None = None, positive_class: str = "positive") -> Ranked:
    """Rank the pool and return its top ``n`` with scores and reasons."""
    s = score(strategy, proba, member_proba, rng)
    idx = top(s, n, rng)
    return Ranked(idx, s[idx], reasons(strategy, s[idx], None if proba is None else proba[idx], positive_class))
