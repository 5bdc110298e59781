"""Held-out evaluation: the split, the metrics, permutation importance, plots, and data-quality checks.

The held-out split (why it is shaped this way): labels arrive a few at a time, so the split is incremental
and sticky. Each round, for each class, enough of the *newly* labelled candids are set aside to bring that
class's held-out share to ``holdout_fraction`` of its labelled count; which ones is decided by a seeded hash
of the candid, not by arrival order. A candid once held out is never trained on, and a candid once trained on
never moves to the held-out set, so every round's metrics are on data the model has not seen and the set
only grows. Caveat: in an active-learning loop the new labels are the alerts the model found hard, so this
held-out set is harder than the stream; a user-chosen validation set (``SKYSIFT_TRAINER_VALIDATION_KEY``)
avoids that bias and replaces the split when given.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

METRICS = ("accuracy", "precision", "recall", "f1", "f1_negative", "f1_macro", "roc_auc", "pr_auc")


def stable_order(candids, seed: int) -> list[int]:
    """Candids sorted by a seeded hash: a reproducible shuffle that does not depend on input order."""
    return sorted((int(c) for c in candids), key=lambda c: hashlib.sha256(f"{seed}:{c}".encode()).digest())


def assign_holdout(new_targets: dict[int, int], holdout_counts: dict[int, int], labelled_counts: dict[int, int],
                   fraction: float, seed: int) -> set[int]:
    """Which of the newly labelled candids to hold out (see the module doc for the rule).

    ``labelled_counts`` counts every usable labelled candid per class, new ones included.
    """
    out: set[int] = set()
    for cls in sorted(labelled_counts):
        new = [c for c, t in new_targets.items() if t == cls]
        want = int(fraction * labelled_counts.get(cls, 0) + 0.5)
        need = max(0, want - holdout_counts.get(cls, 0))
        out.update(stable_order(new, seed)[:need])
    return out


def class_balance(y) -> dict[str, float]:
    y = np.asarray(y)
    n = len(y)
    pos = int((y == 1).sum())
    return {"n": n, "n_positive": pos, "n_negative": n - pos, "positive_fraction": pos / n if n else float("nan")}


def metrics(y_true, p_positive, threshold: float = 0.5) -> dict[str, float]:
    """accuracy, precision, recall, F1 of the positive class, F1 of the negative class and their mean (macro),
    the confusion counts, and, only when both classes are present, ROC AUC and PR AUC (average precision).

    Where the positive class is the majority its F1 hardly moves; the negative and macro F1 show the rest.
    """
    from sklearn.metrics import (
        accuracy_score,
        average_precision_score,
        confusion_matrix,
        f1_score,
        precision_recall_fscore_support,
        roc_auc_score,
    )

    y_true = np.asarray(y_true, dtype=int)
    p_positive = np.asarray(p_positive, dtype=float)
    y_pred = (p_positive >= threshold).astype(int)
    precision, recall, f1, _ = precision_recall_fscore_support(y_true, y_pred, average="binary", zero_division=0)
    f1_negative = f1_score(1 - y_true, 1 - y_pred, zero_division=0)
    tn, fp, fn, tp = confusion_matrix(y_true, y_pred, labels=[0, 1]).ravel()
    out = {"accuracy": float(accuracy_score(y_true, y_pred)), "precision": float(precision),
           "recall": float(recall), "f1": float(f1), "f1_negative": float(f1_negative),
           "f1_macro": float((f1 + f1_negative) / 2), "tn": int(tn), "fp": int(fp), "fn": int(fn), "tp": int(tp)}
    if len(np.unique(y_true)) == 2:
        out["roc_auc"] = float(roc_auc_score(y_true, p_positive))
        out["pr_auc"] = float(average_precision_score(y_true, p_positive))
    return out


def multiclass_metrics(y_true, proba, classes: tuple[str, ...]) -> dict[str, float]:
    """A multi-class model's accuracy, macro precision/recall/F1 (each class counts the same, however rare) and
    each class's F1, precision and recall (``f1_<class>``), and ROC AUC (one-vs-rest, macro) when every class is
    present. The decision is the most probable class."""
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support, roc_auc_score

    y_true = np.asarray(y_true, dtype=int)
    proba = np.asarray(proba, dtype=float)
    y_pred = proba.argmax(axis=1)
    every = list(range(len(classes)))
    precision, recall, f1, _ = precision_recall_fscore_support(y_true, y_pred, labels=every, zero_division=0)
    out = {"accuracy": float(accuracy_score(y_true, y_pred)), "precision_macro": float(precision.mean()),
           "recall_macro": float(recall.mean()), "f1_macro": float(f1.mean())}
    for i, name in enumerate(classes):
        out.update({f"f1_{name}": float(f1[i]), f"precision_{name}": float(precision[i]),
                    f"recall_{name}": float(recall[i])})
    if len(np.unique(y_true)) == len(classes):
        out["roc_auc"] = float(roc_auc_score(y_true, proba, multi_class="ovr", labels=every))
    return out


def promotion(registered_name: str, version: str, metric: str, new_value: float | None,
              champion_version: str | None = None, champion_value: float | None = None,
              same_feature_set: bool = True, tolerance: float = 0.0) -> tuple[bool, str]:
    """The champion rule: whether ``version`` becomes the champion, and why (see :mod:`.tracking`).

    A new model is promoted when there is no champion, when the champion was trained on another feature set
    (it cannot score these features), or when it is not worse on this round's held-out set
    (``new >= champion - tolerance``); without a held-out value to compare on, the champion stays.
    """
    if champion_version is None:
        return True, f"version {version} is the first champion of {registered_name}"
    if not same_feature_set:
        return True, f"version {version} replaces champion {champion_version} trained on another feature set"
    if new_value is None:
        return False, f"champion stays at version {champion_version}: no held-out {metric} to compare on"
    if champion_value is None or new_value >= champion_value - tolerance:
        old_text = "undefined" if champion_value is None else f"{champion_value:.3f}"
        return True, (f"version {version} is the champion: held-out {metric} {new_value:.3f} for it (the candidate) "
                      f"vs {old_text} for version {champion_version} (the champion until now)")
    return False, (f"champion stays at version {champion_version}: held-out {metric} {champion_value:.3f} for it "
                   f"(the champion) beats {new_value:.3f} for version {version} (the candidate)")


def permutation_table(model, X: pd.DataFrame, y, scoring: str, repeats: int, seed: int) -> pd.DataFrame:
    """Permutation importance of each feature (drop in ``scoring`` when the column is shuffled), largest first."""
    from sklearn.inspection import permutation_importance

    result = permutation_importance(model, X, np.asarray(y), scoring=scoring, n_repeats=repeats, random_state=seed)
    table = pd.DataFrame({"feature": list(X.columns), "importance_mean": result.importances_mean,
                          "importance_std": result.importances_std})
    return table.sort_values("importance_mean", ascending=False, ignore_index=True)


def png_bytes(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def importance_plot(table: pd.DataFrame, title: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = table.iloc[::-1]
    fig, ax = plt.subplots(figsize=(6, 0.28 * len(t) + 1.2))
    ax.barh(t["feature"], t["importance_mean"], xerr=t["importance_std"], color="#4477aa")
    ax.axvline(0, color="black", lw=0.8)
    ax.set_xlabel("drop in score when shuffled")
    ax.set_title(title)
    return png_bytes(fig)


@dataclass(frozen=True)
class Confusion:
    """Held-out confusion counts: ``matrix[i, j]`` alerts of class i predicted as class j, classes by target.

    The one home of the matrix: a round logs it (``confusion_matrix.json``), and the trainer's PNG and the app's
    rounds page both read it here and draw it with :meth:`figure`."""

    classes: tuple[str, ...]
    matrix: np.ndarray

    @classmethod
    def of_predictions(cls, y_true, y_pred, classes: tuple[str, ...]) -> Confusion:
        from sklearn.metrics import confusion_matrix

        return cls(tuple(classes), confusion_matrix(y_true, y_pred, labels=range(len(classes))))

    @classmethod
    def from_logged(cls, logged: dict, classes: tuple[str, ...] = ()) -> Confusion:
        """A run's logged counts: a multi-class round logs its classes and matrix, a binary one the four cells
        (tn, fp, fn, tp) of the tag's (negative, positive) ``classes``."""
        if "matrix" in logged:
            return cls(tuple(logged["classes"]), np.array(logged["matrix"], dtype=int))
        return cls(tuple(classes), np.array([[logged.get("tn", 0), logged.get("fp", 0)],
                                             [logged.get("fn", 0), logged.get("tp", 0)]], dtype=int))

    def logged(self) -> dict:
        """What :meth:`from_logged` reads: the four cells of a binary tag (as every binary round has logged
        them), else the classes and the matrix."""
        if len(self.classes) == 2:
            (tn, fp), (fn, tp) = self.matrix.tolist()
            return {"tn": tn, "fp": fp, "fn": fn, "tp": tp}
        return {"classes": list(self.classes), "matrix": self.matrix.tolist()}

    @property
    def n(self) -> int:
        return int(self.matrix.sum())

    def figure(self, title: str):
        """The matrix with its counts in a colour that reads on their cell (black on dark blue did not), the true
        classes' names upright beside their row (written across, "true not_galactic" was cut at the figure's
        left edge), three or more predicted names slanted (side by side they overlap)."""
        from matplotlib.figure import Figure

        cm, k = self.matrix, len(self.classes)
        fig = Figure(figsize=(max(3.6, 0.9 * k + 1.2), max(3.4, 0.9 * k + 1.0)), dpi=120, layout="constrained")
        ax = fig.add_subplot()
        ax.imshow(cm, cmap="Blues", vmin=0, vmax=max(1, cm.max()))
        for (i, j), v in np.ndenumerate(cm):
            ax.text(j, i, str(v), ha="center", va="center", fontsize=14,
                    color="white" if v > cm.max() / 2 else "#08306b")
        slanted = k > 2
        ax.set_xticks(range(k), self.classes, fontsize=9, rotation=45 if slanted else 0,
                      ha="right" if slanted else "center")
        ax.set_yticks(range(k), self.classes, fontsize=9, rotation=90, va="center")
        ax.set_xlabel("predicted", fontsize=9)
        ax.set_ylabel("true", fontsize=9)
        ax.set_title(title, fontsize=9)
        return fig

    def png(self, title: str) -> bytes:
        buf = io.BytesIO()
        self.figure(title).savefig(buf, format="png")
        return buf.getvalue()


@dataclass
class QualityReport:
    """Checks a training set must pass: ``issues`` empty means usable; ``score`` in [0, 1] summarises them."""

    score: float
    issues: list[str] = field(default_factory=list)
    stats: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.issues


def quality(samples: pd.DataFrame, feature_columns: list[str], conflicts: set[int] = frozenset(),
            min_minority_fraction: float = 0.1, classes: tuple[str, ...] = ()) -> QualityReport:
    """Class balance, duplicate candids, rows without any feature, candids whose labellers disagree.

    ``samples`` has ``candid`` and ``target`` columns plus the features (NaN where missing); ``classes`` are the
    model tag's class names by target. A class without a sample is an issue: counting only the classes present,
    a multi-class set missing one looked balanced, and its model cannot learn the class.
    The score multiplies the clean fraction of each check and the balance relative to the minimum, so one
    bad aspect cannot be hidden by the others being fine.
    """
    n = len(samples)
    if n == 0:
        return QualityReport(0.0, ["no samples"], {"n": 0})
    dup = int(samples["candid"].duplicated().sum())
    present = [c for c in feature_columns if c in samples.columns]
    no_features = int(samples[present].isna().all(axis=1).sum()) if present else n
    conflicted = int(samples["candid"].isin(list(conflicts)).sum())
    balance = class_balance(samples["target"])
    counts = samples["target"].value_counts()
    absent = [name for target, name in enumerate(classes) if target not in counts.index]
    minority = counts.min() / n if len(counts) > 1 and not absent else 0.0
    issues = []
    if len(counts) < 2:
        issues.append(f"only one class ({balance['n_positive']} positive, {balance['n_negative']} negative)")
    elif absent:
        issues.append(f"no samples of class {', '.join(absent)} ({len(classes) - len(absent)} of {len(classes)} "
                      "classes present)")
    elif minority < min_minority_fraction:
        issues.append(f"class imbalance: minority class is {minority:.1%} of {n} (< {min_minority_fraction:.0%})")
    if dup:
        issues.append(f"{dup} duplicate candid rows")
    if no_features:
        issues.append(f"{no_features} rows have no features")
    if conflicted:
        issues.append(f"{conflicted} candids have conflicting labels from different labellers")
    if missing_cols := sorted(set(feature_columns) - set(present)):
        issues.append(f"feature columns missing: {', '.join(missing_cols)}")
    score = (1 - dup / n) * (1 - no_features / n) * (1 - conflicted / n) * min(1.0, minority / min_minority_fraction)
    stats = {**balance, "duplicates": dup, "rows_without_features": no_features, "conflicts": conflicted,
             "nan_fraction": float(samples[present].isna().to_numpy().mean()) if present else 1.0}
    return QualityReport(round(float(score), 4), issues, stats)
