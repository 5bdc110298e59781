"""What a round leaves behind, under ``rounds/<experiment>/round=NNN/``, and reading it back.

``training_ids.parquet`` and ``holdout_ids.parquet`` say which labelled candids were trained on / held out,
with their target and the round they joined; ``queue.parquet`` is the ranked alerts to label next; and
``meta.json`` is written last with put-if-absent: a round exists once its meta.json does, and two concurrent
runs cannot both create round N.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass, field

import pandas as pd
import pyarrow as pa

from skysift import errors
from skysift.store import keys

EXPERIMENT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")  # fullmatch: "$" would let a final newline in
QUEUE_COLUMNS = ["candid", "objectId", "rank", "score", "probability", "strategy", "reason", "alerts_key"]
IDS_SCHEMA = pa.schema([("candid", pa.int64()), ("target", pa.int8()), ("label", pa.string()), ("round_added", pa.int32())])


def check_experiment(name: str) -> str:
    if not EXPERIMENT_RE.fullmatch(name or ""):
        raise errors.InvalidArgument(
            f"invalid experiment name {name!r}: 1-64 letters, digits, '_', '.', '-', starting with a letter or digit")
    return name


@dataclass
class RoundResult:
    experiment: str
    round: int
    created: bool
    model_tag: str
    strategy: str
    mlflow_run_id: str = ""
    model_version: str = ""
    champion_moved: bool = False
    metrics: dict = field(default_factory=dict)
    queue_size: int = 0
    queue_key: str = ""
    message: str = ""
    n_train: int = 0
    n_holdout: int = 0
    n_pool: int = 0
    quality_issues: list = field(default_factory=list)
    timings: dict = field(default_factory=dict)

    @classmethod
    def from_meta(cls, meta: dict) -> RoundResult:
        return cls(**{k: v for k, v in meta["result"].items() if k in cls.__dataclass_fields__})


@dataclass
class QueueItem:
    candid: int
    object_id: str
    rank: int
    score: float
    probability: float
    strategy: str
    reason: str
    alerts_key: str
    label: str = ""  # the current label when it has been labelled since the queue was written


@dataclass
class QueueResult:
    experiment: str
    round: int
    items: list[QueueItem]


def empty_ids() -> pd.DataFrame:
    return IDS_SCHEMA.empty_table().to_pandas()


def ids_table(ids: list[int], labelled: dict[int, tuple[str, int | None]], prev: pd.DataFrame, number: int) -> pa.Table:
    """The training or held-out candids of round ``number``, each with the round it first joined."""
    added = dict(zip(prev["candid"].astype("int64"), prev["round_added"].astype("int32")))
    return pa.table({
        "candid": pa.array(ids, pa.int64()),
        "target": pa.array([labelled[c][1] for c in ids], pa.int8()),
        "label": pa.array([labelled[c][0] for c in ids], pa.string()),
        "round_added": pa.array([int(added.get(c, number)) for c in ids], pa.int32()),
    }, schema=IDS_SCHEMA)


class RoundRecords:
    """The rounds of every experiment in one store."""

    def __init__(self, store):
        self.store = store

    def numbers(self, experiment: str) -> list[int]:
        check_experiment(experiment)
        found = []
        for key in self.store.list_keys(f"rounds/{experiment}/"):
            m = re.match(rf"^rounds/{re.escape(experiment)}/round=(\d+)/meta\.json$", key)
            if m:
                found.append(int(m.group(1)))
        return sorted(found)

    def meta(self, experiment: str, round_number: int | None = None) -> dict:
        numbers = self.numbers(experiment)
        if not numbers:
            raise errors.NotFound(f"experiment {experiment!r} has no round yet; run `skysift round --experiment {experiment}`")
        number = numbers[-1] if round_number is None else round_number
        if number not in numbers:
            raise errors.NotFound(f"experiment {experiment!r} has no round {number}; rounds: {numbers}")
        return json.loads(self.store.get_bytes(keys.round_prefix(experiment, number) + "meta.json"))

    def latest(self, experiment: str) -> dict | None:
        return self.meta(experiment) if self.numbers(experiment) else None

    def ids(self, experiment: str, number: int, name: str) -> pd.DataFrame:
        key = keys.round_prefix(experiment, number) + name
        return self.store.read_table(key).to_pandas() if self.store.exists(key) else empty_ids()

    def queue(self, meta: dict) -> pd.DataFrame:
        return self.store.read_table(meta["queue_key"]).to_pandas().sort_values("rank")

    def write(self, experiment: str, number: int, queue: pd.DataFrame, training: pa.Table, holdout: pa.Table,
              meta: dict) -> None:
        """The round's tables, then its meta.json (put-if-absent: the round exists from then on)."""
        prefix = keys.round_prefix(experiment, number)
        self.store.write_table(prefix + "queue.parquet", pa.Table.from_pandas(queue[QUEUE_COLUMNS], preserve_index=False))
        self.store.write_table(prefix + "training_ids.parquet", training)
        self.store.write_table(prefix + "holdout_ids.parquet", holdout)
        if not self.store.put_if_absent(prefix + "meta.json", json.dumps(meta, indent=2, default=_jsonable).encode()):
            raise errors.FailedPrecondition(f"round {number} of {experiment!r} was created by another run meanwhile")


def _jsonable(value):
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def read_candids(store, key: str) -> list[int]:
    """The ``candid`` column of a CSV or parquet object (a user-chosen validation set)."""
    if key.endswith(".csv"):
        frame = pd.read_csv(io.BytesIO(store.get_bytes(key)), usecols=["candid"])
    else:
        frame = store.read_table(key, columns=["candid"]).to_pandas()
    return frame["candid"].astype("int64").tolist()
