"""What labellers did: one labeller's own history, and how far labellers agree where they labelled the same alert.

Agreement compares each user's *current* label of a candid (their latest event, undo markers taken back, as
:func:`~skysift.app.labelling.current_labels` reads them). ``skip`` is left out: it records that an alert was
seen, not what it is. For every pair of users with alerts in common: percent agreement and Cohen's kappa
(agreement corrected for chance, from scikit-learn). Kappa is undefined (None) when the pair used one label
between them: chance agreement is then certain.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

from skysift.app.labelling import current_labels, is_undo
from skysift.app.trainer import Label


def history(events: list[Label], user: str) -> list[dict]:
    """``user``'s label events, latest first, as rows for a table; an undo marker reads "undo"."""
    mine = sorted((e for e in events if e.user == user), key=lambda e: e.timestamp.timestamp() if e.timestamp else 0,
                  reverse=True)
    return [{"time": e.timestamp, "label": "undo" if is_undo(e) else e.label, "candid": str(e.candid),
             "objectId": e.object_id, "experiment": e.experiment, "round": e.round,
             "comment": "" if is_undo(e) else e.comment} for e in mine]


@dataclass(frozen=True)
class PairAgreement:
    user_a: str
    user_b: str
    n: int  # alerts both labelled
    agreed: int
    percent: float
    kappa: float | None  # None: undefined (a single label between them)


@dataclass(frozen=True)
class Agreement:
    pairs: list[PairAgreement]
    disagreements: list[dict]  # {candid, objectId, labels: {user: label}} where the users' labels differ
    n_shared: int  # alerts labelled by more than one user


def agreement(events: list[Label]) -> Agreement:
    """Pairwise agreement of the users in ``events`` on the alerts labelled by more than one of them."""
    from sklearn.metrics import cohen_kappa_score

    by_user = {}
    for user in sorted({e.user for e in events}):
        labels = {c: lab for c, lab in current_labels(events, user).items() if lab != "skip"}
        if labels:
            by_user[user] = labels
    pairs = []
    for a, b in combinations(by_user, 2):
        common = sorted(by_user[a].keys() & by_user[b].keys())
        if not common:
            continue
        ya, yb = [by_user[a][c] for c in common], [by_user[b][c] for c in common]
        agreed = sum(x == y for x, y in zip(ya, yb))
        kappa = float(cohen_kappa_score(ya, yb)) if len(set(ya) | set(yb)) > 1 else None
        pairs.append(PairAgreement(a, b, len(common), agreed, 100.0 * agreed / len(common), kappa))
    object_ids = {e.candid: e.object_id for e in events if e.object_id}
    shared = {}
    for user, labels in by_user.items():
        for candid, label in labels.items():
            shared.setdefault(candid, {})[user] = label
    shared = {c: users for c, users in shared.items() if len(users) > 1}
    disagreements = [{"candid": c, "objectId": object_ids.get(c, ""), "labels": dict(sorted(users.items()))}
                     for c, users in sorted(shared.items()) if len(set(users.values())) > 1]
    return Agreement(pairs, disagreements, len(shared))
