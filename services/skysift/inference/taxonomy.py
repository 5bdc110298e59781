"""Class taxonomies: how a model's per-leaf probabilities are reported, parents before children.

Oracle (oracle-support) reports a tree of classes (Persistent → AGN, CV, Varstar; Transient → SN Ia, ...) as a
pre-order walk with the root dropped, each parent immediately followed by its subclasses. A parent's probability
is the sum of its leaves', so the walk reads top-down. The binary models of skysift are the simplest tree: a root
with two leaves (``ModelTag.classes``), so both kinds go through this one mechanism.

A taxonomy is written as nested JSON objects, e.g. ``{"Persistent": {"AGN": {}, "CV": {}}, "Transient": {...}}``;
a leaf is an empty object. It travels with a model as its ``taxonomy`` model-version tag.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import numpy as np

from skysift.errors import InvalidArgument


@dataclass(frozen=True)
class Node:
    label: str
    parent: str  # "" for a top-level class (the dropped root's children)
    column: str  # the predictions-table column, e.g. prob_SN_Ia
    leaves: tuple[int, ...]  # indices into the model's leaf classes whose probabilities sum to this node's


@dataclass(frozen=True)
class Taxonomy:
    """A tree over a model's leaf classes; ``leaves`` follows the order of predict_proba's columns."""

    leaves: tuple[str, ...]
    nodes: tuple[Node, ...]  # pre-order, parents before children, root dropped

    @property
    def columns(self) -> list[str]:
        return [n.column for n in self.nodes]

    def node_probabilities(self, leaf_proba: np.ndarray) -> np.ndarray:
        """(n, n_leaves) leaf probabilities → (n, n_nodes) in pre-order (a parent sums its leaves)."""
        out = np.empty((leaf_proba.shape[0], len(self.nodes)), dtype=np.float64)
        for j, node in enumerate(self.nodes):
            if len(node.leaves) == 1:
                out[:, j] = leaf_proba[:, node.leaves[0]]
            else:
                out[:, j] = leaf_proba[:, list(node.leaves)].sum(axis=1)
        return out

    def as_tree(self) -> dict:
        """The nested-object form (what the ``taxonomy`` model tag holds)."""
        children: dict[str, dict] = {"": {}}
        for node in self.nodes:
            children[node.label] = {}
            children[node.parent][node.label] = children[node.label]
        return children[""]


def column_name(label: str) -> str:
    """A parquet/CSV-friendly column for a class label: ``SN Ib/c`` → ``prob_SN_Ib_c``."""
    return "prob_" + (re.sub(r"[^0-9A-Za-z]+", "_", label).strip("_") or "class")


def flat(classes: tuple[str, ...] | list[str]) -> Taxonomy:
    """A root with one leaf per class: the binary models' taxonomy."""
    return from_tree({c: {} for c in classes}, list(classes))


def from_tree(tree: dict, leaf_order: list[str] | None = None) -> Taxonomy:
    """Build a taxonomy from nested objects; ``leaf_order`` is predict_proba's column order (default: walk order)."""
    if not isinstance(tree, dict) or not tree:
        raise InvalidArgument(f"a taxonomy must be a non-empty JSON object of classes, got {tree!r}")
    walk: list[tuple[str, str, bool]] = []  # (label, parent, is_leaf) in pre-order

    def visit(sub: dict, parent: str) -> None:
        for label, kids in sub.items():
            if not isinstance(kids, dict):
                raise InvalidArgument(f"taxonomy class {label!r}: children must be an object ({{}} for a leaf)")
            walk.append((label, parent, not kids))
            visit(kids, label)

    visit(tree, "")
    labels = [w[0] for w in walk]
    if len(set(labels)) != len(labels):
        raise InvalidArgument(f"taxonomy repeats a class name: {labels}")
    walk_leaves = [label for label, _, leaf in walk if leaf]
    leaves = list(leaf_order) if leaf_order is not None else walk_leaves
    if sorted(leaves) != sorted(walk_leaves):
        raise InvalidArgument(f"model classes {leaves} do not match the taxonomy's leaves {walk_leaves}")
    columns = [column_name(label) for label in labels]
    if len(set(columns)) != len(columns):
        raise InvalidArgument(f"taxonomy classes {labels} map to clashing columns {columns}")

    index = {label: i for i, label in enumerate(leaves)}
    below: dict[str, list[int]] = {label: [] for label in labels}
    parent_of = {label: parent for label, parent, _ in walk}
    for label, _, leaf in walk:
        if leaf:
            node = label
            while node:
                below[node].append(index[label])
                node = parent_of[node]
    nodes = tuple(
        Node(label, parent, column_name(label), tuple(sorted(below[label]))) for label, parent, _ in walk
    )
    return Taxonomy(tuple(leaves), nodes)


def from_json(text: str, leaf_order: list[str] | None = None) -> Taxonomy:
    try:
        tree = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidArgument(f"taxonomy is not valid JSON: {exc}") from None
    return from_tree(tree, leaf_order)
