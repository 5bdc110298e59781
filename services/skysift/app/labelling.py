"""A labeller's pass over one round's queue: where they are, what they labelled, undo, and progress.

Kept in ``st.session_state`` and driven from button callbacks that receive the candid they were drawn for,
so a click always labels the alert that was on screen, never "whatever is current after the rerun". Writes
are idempotent per (alert, user, round): a double-registered click submits one event, not two.

Label events are append-only, so undo cannot delete one: it appends the labeller's previous label of that
alert, or, when there was none, a ``skip`` event with the comment ``undo`` that the page reads as "not
labelled" (and the trainer as "no target"). The alert comes back on screen to be labelled again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from skysift.app.trainer import Label, Queue, QueueItem, TrainerClient
from skysift.errors import InvalidArgument
from skysift.modeltags import check_label

UNDO_COMMENT = "undo"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def current_labels(events: list[Label], user: str) -> dict[int, str]:
    """The user's current label of each candid from their events (oldest first); undo markers unlabel."""
    out: dict[int, str] = {}
    for event in sorted(events, key=lambda e: e.timestamp or _EPOCH):
        if event.user != user:
            continue
        if event.comment == UNDO_COMMENT and event.label == "skip":
            out.pop(event.candid, None)
        else:
            out[event.candid] = event.label
    return out


@dataclass
class LabelSession:
    client: TrainerClient
    user: str
    experiment: str
    model_tag: str = ""
    queue: Queue | None = None
    position: int = 0
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
        self.position = self._next_unlabelled(0)

    @property
    def items(self) -> list[QueueItem]:
        return self.queue.items if self.queue else []

    @property
    def current(self) -> QueueItem | None:
        return self.items[self.position] if 0 <= self.position < len(self.items) else None

    @property
    def done(self) -> int:
        return sum(1 for i in self.items if i.candid in self.mine)

    @property
    def finished(self) -> bool:
        return bool(self.items) and self.done == len(self.items)

    def progress_text(self) -> str:
        return f"{self.done} of {len(self.items)} this round"

    def _next_unlabelled(self, start: int) -> int:
        """Index of the first unlabelled item at or after ``start``, wrapping around; len(items) when none."""
        n = len(self.items)
        for step in range(n):
            i = (start + step) % n
            if self.items[i].candid not in self.mine:
                return i
        return n

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
        self.position = self._next_unlabelled(self.items.index(item) + 1)
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
        self.position = self.items.index(item)
        return candid

    def move(self, step: int) -> None:
        if self.items:
            self.position = max(0, min(len(self.items) - 1, self.position + step))

    def goto(self, index: int) -> None:
        if not 0 <= index < len(self.items):
            raise InvalidArgument(f"no alert number {index + 1}: this queue has {len(self.items)}")
        self.position = index

