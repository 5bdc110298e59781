"""A fitted HistGradientBoosting model's exact probabilities over a large pool, several times faster on one core.

scikit-learn walks every tree for every row, one unpredictable branch per level (~50 ns a tree and row here:
a 10M-row pool took ~50 s of a round's 82 s). The trees' thresholds are few (a model fitted on hundreds of
labels), so the ensemble is compiled as in QuickScorer (Lucchese et al., SIGIR 2015): a node whose test fails
(the row goes right) rules out the leaves of its left subtree, and the exit leaf of a tree is the leftmost leaf
no failed node ruled out. For one feature, the nodes that fail for a value ``x`` are those with threshold < x: a
prefix of its nodes sorted by threshold. So each feature gets a table, indexed by the number of its thresholds
below ``x`` (plus a row for a missing value), of the leaves every tree keeps; a row's exit leaves are the AND of
one table row per feature: vectorised, branch-free. The leaf values are then summed tree after tree in
scikit-learn's order and turned into probabilities by the model's own loss, so the probabilities are identical
to ``predict_proba``'s, bit for bit (a test checks). A model this does not cover (categorical splits, more than
64 leaves a tree, tables over TABLE_LIMIT bytes) is scored by scikit-learn.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TABLE_LIMIT = 64 * 1024 * 1024  # bytes of leaf tables beyond which scikit-learn's own walk is used
CHUNK = 4096  # rows scored at a time: the (rows x trees) leaf sets stay in the CPU's cache


@dataclass
class _Feature:
    column: int
    thresholds: np.ndarray  # its nodes' thresholds, ascending
    leaves: np.ndarray  # (len(thresholds) + 2, trees): the leaves each tree keeps; the last row is a missing value's


class CompiledForest:
    """The leaf tables of one fitted model (see the module doc); :meth:`predict_proba` as the model's."""

    def __init__(self, model, features: list[_Feature], leaf_values: np.ndarray, width: type):
        self.model, self.features, self.leaf_values, self.width = model, features, leaf_values, width
        self.n_trees, self.max_leaves = leaf_values.shape

    @classmethod
    def compile(cls, model) -> CompiledForest | None:
        """The compiled form of a fitted ``HistGradientBoostingClassifier``, or None when it is not covered."""
        trees = [predictor.nodes for iteration in model._predictors for predictor in iteration]
        if not trees or any(nodes["is_categorical"].any() for nodes in trees):
            return None
        n_leaves = [int(nodes["is_leaf"].sum()) for nodes in trees]
        width = np.uint32 if max(n_leaves) <= 32 else np.uint64 if max(n_leaves) <= 64 else None
        n_internal = sum(len(nodes) for nodes in trees) - sum(n_leaves)
        if width is None or (n_internal + 2 * model.n_features_in_) * len(trees) * 8 > TABLE_LIMIT:
            return None
        leaf_values = np.zeros((len(trees), max(n_leaves)))
        by_feature: dict[int, list[tuple[float, int, int, bool]]] = {}  # (threshold, tree, leaves kept if it fails, NaN goes left)
        for t, nodes in enumerate(trees):
            ranges = _leaf_ranges(nodes)
            for node, (first, _) in ranges.items():
                if nodes["is_leaf"][node]:
                    leaf_values[t, first] = nodes["value"][node]
                    continue
                left_first, left_stop = ranges[int(nodes["left"][node])]
                kept = ((1 << max(n_leaves)) - 1) & ~((1 << left_stop) - (1 << left_first))
                by_feature.setdefault(int(nodes["feature_idx"][node]), []).append(
                    (float(nodes["num_threshold"][node]), t, kept, bool(nodes["missing_go_to_left"][node])))
        features = []
        everything = np.iinfo(width).max
        for column, splits in sorted(by_feature.items()):
            splits.sort(key=lambda s: s[0])
            leaves = np.full((len(splits) + 2, len(trees)), everything, dtype=width)
            for i, (_, t, kept, _) in enumerate(splits):
                leaves[i + 1:-1, t] &= width(kept)  # fails for every value above its threshold
            for _, t, kept, nan_left in splits:
                if not nan_left:
                    leaves[-1, t] &= width(kept)
            features.append(_Feature(column, np.array([s[0] for s in splits]), leaves))
        return cls(model, features, leaf_values, width)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """``model.predict_proba(X)`` for a float64 array with the model's columns in order."""
        X = np.asarray(X, dtype=np.float64)
        if not len(X):
            return np.empty((0, len(self.model.classes_)))
        return np.concatenate([self._chunk(X[i:i + CHUNK]) for i in range(0, len(X), CHUNK)])

    def _chunk(self, X: np.ndarray) -> np.ndarray:
        kept = np.full((len(X), self.n_trees), np.iinfo(self.width).max, dtype=self.width)
        rows = np.empty_like(kept)
        for f in self.features:
            x = X[:, f.column]
            codes = np.searchsorted(f.thresholds, x, side="left")  # thresholds below x: the nodes that fail
            codes[np.isnan(x)] = len(f.leaves) - 1
            np.take(f.leaves, codes, axis=0, out=rows)
            kept &= rows
        exit_leaf = np.bitwise_count((kept & (~kept + self.width(1))) - self.width(1))  # the lowest bit kept
        values = np.take(self.leaf_values, exit_leaf.T + (np.arange(self.n_trees) * self.max_leaves)[:, None])
        per_iteration = self.model.n_trees_per_iteration_
        raw = np.zeros((len(X), per_iteration), dtype=self.model._baseline_prediction.dtype, order="F")
        raw += self.model._baseline_prediction
        for t in range(self.n_trees):  # scikit-learn's order of additions, for the same floating-point sums
            raw[:, t % per_iteration] += values[t]
        return self.model._loss.predict_proba(raw)


def _leaf_ranges(nodes: np.ndarray) -> dict[int, tuple[int, int]]:
    """node -> (its first leaf, the leaf after its last), leaves numbered left to right."""
    ranges: dict[int, tuple[int, int]] = {}

    def visit(node: int, first: int) -> int:
        if nodes["is_leaf"][node]:
            stop = first + 1
        else:
            stop = visit(int(nodes["right"][node]), visit(int(nodes["left"][node]), first))
        ranges[node] = (first, stop)
        return stop

    visit(0, 0)
    return ranges
