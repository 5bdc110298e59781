"""Label vocabulary and model tags: how each model turns human labels into its 0/1 target.

Shared by the trainer (targets), inference (class names) and the Streamlit app (buttons and keys).
"""

from __future__ import annotations

from dataclasses import dataclass

from skysift.errors import InvalidArgument

# The prototype's vocabulary; "skip" records that a human saw the alert and chose not to label it.
LABELS = ("real", "extragalactic", "galactic", "agn", "bogus", "varstar", "skip")
# Registered models are ``<prefix>_<tag>``: deployments sharing one MLflow server (or test modules sharing one
# test server) keep their champions apart with their own prefix.
DEFAULT_MODEL_PREFIX = "skysift"
LABEL_KEYS = {"real": "1", "extragalactic": "2", "galactic": "3", "agn": "4", "bogus": "5", "varstar": "6", "skip": "0"}


@dataclass(frozen=True)
class ModelTag:
    """A binary model: labels in ``positive`` map to 1, in ``negative`` to 0, anything else is not used."""

    name: str
    positive_class: str
    negative_class: str
    positive: frozenset[str]
    negative: frozenset[str]
    # the classes belong to the object, not the alert: one label answers for every alert of the object
    object_level: bool = False

    def registered_name(self, prefix: str = DEFAULT_MODEL_PREFIX) -> str:
        """Name of the model in the MLflow registry (``<prefix>_<tag>``, ``SKYSIFT_MLFLOW_MODEL_PREFIX``); its
        ``champion`` alias is what inference serves."""
        return f"{prefix}_{self.name}"

    @property
    def classes(self) -> tuple[str, str]:
        """Class names in the order of predict_proba's columns (0, 1)."""
        return (self.negative_class, self.positive_class)

    def target(self, label: str) -> int | None:
        if label in self.positive:
            return 1
        if label in self.negative:
            return 0
        return None


MODEL_TAGS: dict[str, ModelTag] = {
    "galactic": ModelTag(
        "galactic", "galactic", "not_galactic", frozenset({"galactic", "varstar"}), frozenset({"extragalactic", "agn"}),
        object_level=True,
    ),
    "realbogus": ModelTag(
        "realbogus", "real", "bogus", frozenset({"real", "extragalactic", "galactic", "agn", "varstar"}), frozenset({"bogus"})
    ),
}
DEFAULT_MODEL_TAG = "galactic"
# The experiment `skysift round` runs, the app opens on and `skysift dev` starts (the chart's round.experiment too).
DEFAULT_EXPERIMENT = "default"


def check_label(label: str) -> str:
    if label not in LABELS:
        raise InvalidArgument(f"unknown label {label!r}; expected one of {', '.join(LABELS)}")
    return label


def get_tag(name: str) -> ModelTag:
    try:
        return MODEL_TAGS[name]
    except KeyError:
        raise InvalidArgument(f"unknown model tag {name!r}; expected one of {', '.join(MODEL_TAGS)}") from None
