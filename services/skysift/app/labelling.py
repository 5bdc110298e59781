"""A labeller's pass over one round's queue: the order they see it in, where they are, what they labelled, undo,
and progress.

Kept in ``st.session_state`` and driven from button callbacks that receive the candid they were drawn for,
so a click always labels the alert that was on screen, never "whatever is current after the rerun". Writes
are idempotent per (alert, user, round): a double-registered click submits one event, not two.

The place in the queue is the candid on screen (``cursor``), not an index: the list shown (``view``) changes
under it when a label hides an alert or the sort order changes. Alerts the labeller already labelled are
hidden unless ``show_labelled`` is set; the alert on screen always stays in the list, so undo and "previous"
never lose it.

Label events are append-only, so undo cannot delete one: it appends the labeller's previous label of that
alert, or, when there was none, a ``skip`` event with the comment ``undo`` that the page reads as "not
labelled" (and the trainer as "no target"). The alert comes back on screen to be labelled again.
"""

from __future__ import annotations

import html
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime

from skysift.app.trainer import Label, Queue, QueueItem, TrainerClient
from skysift.errors import InvalidArgument
from skysift.modeltags import Label as VocabularyLabel
from skysift.modeltags import check_label

UNDO_COMMENT = "undo"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# The orders Astronomaly offers: the query strategy's, a retrained model's uncertainty, and random as the control.
SORTS = {"queue": "queue order (the round's strategy rank)", "retrained": "retrained model (champion) uncertainty",
         "random": "random (control)"}


def button_style(labels: tuple[VocabularyLabel, ...]) -> str:
    """CSS giving each label's button its vocabulary colour (a bar on its left edge), so that the row of buttons
    reads the same as the taxonomy file a team wrote; a described name (:func:`described`) is dotted-underlined."""
    rules = "".join(f"[class*=st-key-label_{lab.name}_] button{{border-left:6px solid {lab.colour}}}" for lab in labels)
    return f"<style>{rules}span.sk-described{{text-decoration:underline dotted;cursor:help}}</style>"


def described(names, labels: tuple[VocabularyLabel, ...]) -> str:
    """``names`` joined by commas, each showing its vocabulary description on hover (HTML for the legend)."""
    by_name = {lab.name: lab.description for lab in labels}
    return ", ".join(f'<span class="sk-described" title="{html.escape(by_name.get(n, ""))}">{html.escape(n)}</span>'
                     for n in names)


def is_undo(event: Label) -> bool:
    return event.label == "skip" and event.comment == UNDO_COMMENT


def current_labels(events: list[Label], user: str) -> dict[int, str]:
    """The user's current label of each candid from their events (oldest first); undo markers unlabel."""
    out: dict[int, str] = {}
    for event in sorted(events, key=lambda e: e.timestamp or _EPOCH):
        if event.user != user:
            continue
        if is_undo(event):
            out.pop(event.candid, None)
        else:
            out[event.candid] = event.label
    return out


def ordered(items: list[QueueItem], by: str, seed: int = 0, uncertainty: dict[int, float] | None = None
            ) -> list[QueueItem]:
    """``items`` in the order ``by`` names: ``queue`` (rank), ``random`` (a shuffle fixed by ``seed``, so the
    same session sees the same order on every rerun) or ``retrained`` (most uncertain first by ``uncertainty``,
    candid → score; alerts it has no score for go last, each group in rank order)."""
    by_rank = sorted(items, key=lambda i: i.rank)
    if by == "queue":
        return by_rank
    if by == "random":
        return random.Random(seed).sample(by_rank, len(by_rank))
    if by == "retrained":
        scores = uncertainty or {}
        return sorted(by_rank, key=lambda i: (i.candid not in scores, -scores.get(i.candid, 0.0)))
    raise InvalidArgument(f"unknown sort {by!r}; expected one of {', '.join(SORTS)}")


@dataclass
class LabelSession:
    client: TrainerClient
    user: str
    experiment: str
    model_tag: str = ""
    queue: Queue | None = None
    order: list[QueueItem] = field(default_factory=list)  # the queue in the order chosen to label it in
    cursor: int | None = None  # candid on screen; None when nothing is left to label
    show_labelled: bool = False
    mine: dict[int, str] = field(default_factory=dict)
    others: dict[int, dict[str, str]] = field(default_factory=dict)  # candid -> {user: label} of other labellers
    undo_stack: list[tuple[int, str | None]] = field(default_factory=list)

    def load(self, round_number: int | None = None) -> None:
        """Fetch the queue and every label event of its alerts; start at the first alert not yet labelled."""
        if not self.user.strip():
            raise InvalidArgument("give your name before labelling: labels are attributed to a user")
        self.queue = self.client.queue(self.experiment, round_number)
        candids = [i.candid for i in self.queue.items]
        events = self.client.labels(candids, history=True) if candids else []
        self.mine = current_labels(events, self.user)
        self.others = {}
        for other in {e.user for e in events} - {self.user}:
            for candid, label in current_labels(events, other).items():
                self.others.setdefault(candid, {})[other] = label
        self.undo_stack = []
        self.order = ordered(self.queue.items, "queue")
        self.cursor = self._next_unlabelled(0)

    def sort(self, by: str, seed: int = 0, uncertainty: dict[int, float] | None = None) -> bool:
        """Label in another order (see :func:`ordered`), from its first alert not yet labelled; False (and the
        place kept) when that is the order already, so the page may call it on every rerun."""
        order = ordered(self.items, by, seed, uncertainty)
        if [i.candid for i in order] == [i.candid for i in self.order]:
            return False
        self.order = order
        self.cursor = self._next_unlabelled(0)
        return True

    @property
    def items(self) -> list[QueueItem]:
        return self.queue.items if self.queue else []

    @property
    def view(self) -> list[QueueItem]:
        """The alerts to step through: the queue in its order, without those already labelled by this user
        unless ``show_labelled`` (the one on screen always stays)."""
        return [i for i in self.order if self.show_labelled or i.candid not in self.mine or i.candid == self.cursor]

    @property
    def current(self) -> QueueItem | None:
        return next((i for i in self.order if i.candid == self.cursor), None)

    @property
    def position(self) -> int:
        """Index of the alert on screen in :attr:`view` (0 when there is none)."""
        return next((n for n, i in enumerate(self.view) if i.candid == self.cursor), 0)

    @property
    def done(self) -> int:
        return sum(1 for i in self.items if i.candid in self.mine)

    @property
    def finished(self) -> bool:
        return bool(self.items) and self.done == len(self.items)

    def progress_text(self) -> str:
        return f"{self.done} of {len(self.items)} this round"

    def _next_unlabelled(self, start: int) -> int | None:
        """Candid of the first unlabelled alert at or after ``start`` in :attr:`order`, wrapping around."""
        n = len(self.order)
        for step in range(n):
            item = self.order[(start + step) % n]
            if item.candid not in self.mine:
                return item.candid
        return None

    def _item(self, candid: int) -> QueueItem:
        for item in self.items:
            if item.candid == candid:
                return item
        raise InvalidArgument(f"alert {candid} is not in the queue of {self.experiment} round {self.queue.round}")

    def _submit(self, item: QueueItem, label: str, comment: str = "") -> None:
        self.client.submit([Label(candid=item.candid, label=label, user=self.user, object_id=item.object_id,
                                  model_tag=self.model_tag, experiment=self.experiment, round=self.queue.round,
                                  comment=comment)])

    def label(self, candid: int, label: str, comment: str = "") -> bool:
        """Label the alert ``candid`` and move to the next unlabelled one; False when it already had this label."""
        check_label(label)
        item = self._item(candid)
        previous = self.mine.get(candid)
        if previous == label and not comment:
            return False
        self._submit(item, label, comment)
        self.mine[candid] = label
        self.undo_stack.append((candid, previous))
        self.cursor = self._next_unlabelled(self.order.index(item) + 1)
        return True

    def undo(self) -> int | None:
        """Take back this session's last label and return to that alert; None when there is nothing to undo."""
        if not self.undo_stack:
            return None
        candid, previous = self.undo_stack.pop()
        item = self._item(candid)
        if previous is None:
            self._submit(item, "skip", UNDO_COMMENT)
            self.mine.pop(candid, None)
        else:
            self._submit(item, previous)
            self.mine[candid] = previous
        self.cursor = candid
        return candid

    def move(self, step: int) -> None:
        view = self.view
        if view:
            self.cursor = view[max(0, min(len(view) - 1, self.position + step))].candid

    def goto(self, index: int) -> None:
        view = self.view
        if not 0 <= index < len(view):
            raise InvalidArgument(f"no alert number {index + 1}: {len(view)} are listed")
        self.cursor = view[index].candid

    def review(self) -> None:
        """Show every alert again, labelled ones included, from the first in the current order."""
        self.show_labelled = True
        if self.order:
            self.cursor = self.order[0].candid
