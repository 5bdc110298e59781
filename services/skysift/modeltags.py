"""Label vocabulary and model tags, read from a YAML file: how each model turns human labels into its classes.

Science teams define their own classes without editing the package: ``SKYSIFT_TAXONOMY_FILE`` names the file
(default: the packaged ``taxonomy.yaml``, the prototype's vocabulary and its two binary tags). A tag is binary
(labels map to a positive and a negative class) or multi-class (one class per label, optionally grouped in a
hierarchy whose group probabilities inference reports). The file is checked as a whole when first read, and a
bad one stops start-up with a :class:`~skysift.errors.ConfigError` naming the line at fault.

Shared by the trainer (targets), inference (class names, hierarchy) and the Streamlit app (buttons and keys).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from skysift import config
from skysift.config import DEFAULT_MODEL_PREFIX, DEFAULT_TAXONOMY_FILE  # noqa: F401 - re-exported
from skysift.errors import ConfigError, InvalidArgument

# The experiment `skysift round` runs, the app opens on and `skysift dev` starts (the chart's round.experiment too).
DEFAULT_EXPERIMENT = "default"
SKIP = "skip"  # the label that answers nothing: every vocabulary has it, no tag learns from it
TAG_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")  # part of registered model and MLflow experiment names


@dataclass(frozen=True)
class ModelTag:
    """A model's classes, in the order of predict_proba's columns, and which labels count as each.

    A binary tag has two classes (negative, positive), each standing for a set of labels; a multi-class tag has
    one class per label and may group them (``groups``: group → members, a member being a class or a group).
    """

    name: str
    classes: tuple[str, ...]
    members: tuple[frozenset[str], ...]  # members[i]: the labels that are classes[i]
    multiclass: bool = False
    # the classes belong to the object, not the alert: one label answers for every alert of the object
    object_level: bool = False
    groups: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def registered_name(self, prefix: str = DEFAULT_MODEL_PREFIX) -> str:
        """Name of the model in the MLflow registry (``<prefix>_<tag>``, ``SKYSIFT_MLFLOW_MODEL_PREFIX``); its
        ``champion`` alias is what inference serves."""
        return f"{prefix}_{self.name}"

    @property
    def negative_class(self) -> str:
        return self.classes[0]

    @property
    def positive_class(self) -> str:
        """The class of predict_proba's column 1 (a binary tag's positive class)."""
        return self.classes[1]

    @property
    def negative(self) -> frozenset[str]:
        return self.members[0]

    @property
    def positive(self) -> frozenset[str]:
        return self.members[1]

    def target(self, label: str) -> int | None:
        """The class index ``label`` trains, or None when this model does not learn from it."""
        for index, labels in enumerate(self.members):
            if label in labels:
                return index
        return None

    def hierarchy(self) -> dict:
        """The classes as nested objects (:mod:`skysift.inference.taxonomy`'s form), groups before members."""
        children = dict(self.groups)
        grouped = {m for members in children.values() for m in members}

        def tree(names) -> dict:
            return {n: tree(children[n]) if n in children else {} for n in names}

        top = [g for g in children if g not in grouped] + [c for c in self.classes if c not in grouped]
        return tree(top)


@dataclass(frozen=True)
class Label:
    name: str
    key: str
    colour: str
    description: str


@dataclass(frozen=True)
class Vocabulary:
    """What a taxonomy file defines, checked: labels in file order, tags by name."""

    labels: tuple[Label, ...]
    tags: dict[str, ModelTag]
    default_tag: str
    source: str  # the file it was read from

    @property
    def label_names(self) -> tuple[str, ...]:
        return tuple(lab.name for lab in self.labels)

    @property
    def keys(self) -> dict[str, str]:
        return {lab.name: lab.key for lab in self.labels}


# -- the file's shape --------------------------------------------------------------------------------------------
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _LabelSpec(_Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")  # stored in label events and parquet
    key: str = Field(pattern=r"^[0-9a-z]$")  # one key press in the app; U and the arrows are the app's own
    colour: str = Field(pattern=r"^#[0-9a-fA-F]{6}$")
    description: str = Field(min_length=1)


class _TagSpec(_Strict):
    name: str = Field(pattern=TAG_NAME.pattern)
    kind: Literal["binary", "multiclass"]
    object_level: bool = False
    positive_class: str | None = None
    negative_class: str | None = None
    positive: list[str] = []
    negative: list[str] = []
    classes: list[str] = []
    hierarchy: dict[str, list[str]] = {}


class _FileSpec(_Strict):
    labels: list[_LabelSpec] = Field(min_length=1)
    tags: list[_TagSpec] = Field(min_length=1)
    default_tag: str


# -- reading, with line numbers ------------------------------------------------------------------------------------
class _Mapping(dict):
    """A YAML mapping that remembers the line of each key (for errors naming the line at fault)."""

    lines: dict


class _Sequence(list):
    lines: list


class _LineLoader(yaml.SafeLoader):
    pass


def _mapping(loader: _LineLoader, node: yaml.MappingNode) -> _Mapping:
    loader.flatten_mapping(node)
    out = _Mapping()
    out.lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in out:
            raise _Fault(key_node.start_mark.line + 1, f"{key!r} is given twice")
        out[key] = loader.construct_object(value_node, deep=True)
        out.lines[key] = key_node.start_mark.line + 1
    return out


def _sequence(loader: _LineLoader, node: yaml.SequenceNode) -> _Sequence:
    out = _Sequence(loader.construct_object(child, deep=True) for child in node.value)
    out.lines = [child.start_mark.line + 1 for child in node.value]
    return out


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)
_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _sequence)


class _Fault(Exception):
    def __init__(self, line: int, message: str):
        super().__init__(message)
        self.line, self.message = line, message


def _line(raw, path) -> int:
    """The line of the deepest part of ``path`` (keys and indices, as pydantic reports them) found in ``raw``."""
    line, node = 1, raw
    for step in path:
        lines = getattr(node, "lines", None)
        try:
            line = lines[step] if lines is not None else line
            node = node[step]
        except (KeyError, IndexError, TypeError):
            break
    return line


def parse(text: str, source: str = "<taxonomy>") -> Vocabulary:
    """Check a taxonomy file's text and build its vocabulary; ConfigError ``<source> line N: why`` if it is bad."""
    raw = None
    try:
        raw = yaml.load(text, Loader=_LineLoader)  # noqa: S506 - a SafeLoader subclass that only adds line numbers
        spec = _FileSpec.model_validate(raw if raw is not None else {})
        return _build(spec, raw, source)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ConfigError(f"{source} line {mark.line + 1 if mark else 1}: not valid YAML: "
                          f"{getattr(exc, 'problem', None) or exc}") from None
    except _Fault as fault:
        raise ConfigError(f"{source} line {fault.line}: {fault.message}") from None
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "the file"
        raise ConfigError(f"{source} line {_line(raw, err['loc'])}: {where}: {err['msg']}"
                          + (f" (and {exc.error_count() - 1} more problems)" if exc.error_count() > 1 else "")) from None


def _build(spec: _FileSpec, raw, source: str) -> Vocabulary:
    def fault(message: str, *path):
        raise _Fault(_line(raw, path), message)

    names: dict[str, int] = {}
    keys_: dict[str, str] = {}
    for i, lab in enumerate(spec.labels):
        if lab.name in names:
            fault(f"label {lab.name!r} is defined twice", "labels", i, "name")
        if lab.key in keys_:
            fault(f"label {lab.name!r}: key {lab.key!r} is already {keys_[lab.key]!r}'s", "labels", i, "key")
        names[lab.name] = i
        keys_[lab.key] = lab.name

    if SKIP not in names:
        fault(f"the labels need {SKIP!r}: a labeller's \"not sure\" and the app's undo are stored as it", "labels")

    def known(label: str, *path) -> str:
        if label not in names:
            fault(f"unknown label {label!r}; the labels are {', '.join(names)}", *path)
        if label == SKIP:
            fault(f"{SKIP!r} cannot train a class: it means the labeller gave no answer", *path)
        return label

    tags: dict[str, ModelTag] = {}
    for t, tag in enumerate(spec.tags):
        where = ("tags", t)
        if tag.name in tags:
            fault(f"tag {tag.name!r} is defined twice", *where, "name")
        tags[tag.name] = (_binary if tag.kind == "binary" else _multiclass)(tag, known, fault, where)
    if spec.default_tag not in tags:
        fault(f"default_tag {spec.default_tag!r} is not a tag; the tags are {', '.join(tags)}", "default_tag")
    labels = tuple(Label(lab.name, lab.key, lab.colour, lab.description) for lab in spec.labels)
    return Vocabulary(labels, tags, spec.default_tag, source)


def _binary(tag: _TagSpec, known, fault, where) -> ModelTag:
    for field_ in ("positive_class", "negative_class"):
        if not getattr(tag, field_):
            fault(f"binary tag {tag.name!r} needs {field_}", *where)
    if tag.classes or tag.hierarchy:
        fault(f"binary tag {tag.name!r}: classes and hierarchy are for kind multiclass", *where)
    if tag.positive_class == tag.negative_class:
        fault(f"tag {tag.name!r}: the positive and negative classes are both {tag.positive_class!r}", *where)
    sides = {}
    for side in ("negative", "positive"):
        labels = getattr(tag, side)
        if not labels:
            fault(f"binary tag {tag.name!r} needs at least one {side} label", *where)
        sides[side] = frozenset(known(lab, *where, side, i) for i, lab in enumerate(labels))
    for i, lab in enumerate(tag.positive):
        if lab in sides["negative"]:
            fault(f"tag {tag.name!r}: label {lab!r} is both positive and negative", *where, "positive", i)
    return ModelTag(tag.name, (tag.negative_class, tag.positive_class), (sides["negative"], sides["positive"]),
                    object_level=tag.object_level)


def _multiclass(tag: _TagSpec, known, fault, where) -> ModelTag:
    if tag.positive or tag.negative or tag.positive_class or tag.negative_class:
        fault(f"multiclass tag {tag.name!r}: positive/negative are for kind binary", *where)
    if len(tag.classes) < 3:
        fault(f"multiclass tag {tag.name!r} needs at least 3 classes (2 is kind binary)", *where, "classes")
    seen: set[str] = set()
    for i, lab in enumerate(tag.classes):
        known(lab, *where, "classes", i)
        if lab in seen:
            fault(f"tag {tag.name!r}: class {lab!r} is listed twice", *where, "classes", i)
        seen.add(lab)
    parent: dict[str, str] = {}
    for group, members in tag.hierarchy.items():
        at = (*where, "hierarchy", group)
        if group in seen:
            fault(f"tag {tag.name!r}: group {group!r} is also a class", *at)
        if not members:
            fault(f"tag {tag.name!r}: group {group!r} has no members", *at)
        for i, member in enumerate(members):
            if member not in seen and member not in tag.hierarchy:
                fault(f"tag {tag.name!r}: {member!r} in group {group!r} is neither a class nor a group", *at, i)
            if member in parent:
                fault(f"tag {tag.name!r}: {member!r} is in two groups, {parent[member]!r} and {group!r}", *at, i)
            parent[member] = group
    for group in tag.hierarchy:  # a chain of parents that comes back to where it started
        node, chain = group, [group]
        while node in parent:
            node = parent[node]
            if node == group:
                fault(f"tag {tag.name!r}: the hierarchy has a cycle: {' → '.join([*chain, group])}",
                      *where, "hierarchy", group)
            chain.append(node)
    return ModelTag(tag.name, tuple(tag.classes), tuple(frozenset({c}) for c in tag.classes), multiclass=True,
                    object_level=tag.object_level,
                    groups=tuple((g, tuple(m)) for g, m in tag.hierarchy.items()))


def read(path: str | Path) -> Vocabulary:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read the taxonomy file {path} (SKYSIFT_TAXONOMY_FILE): {exc.strerror}") from None
    return parse(text, str(path))


@functools.cache
def vocabulary() -> Vocabulary:
    """The vocabulary of ``SKYSIFT_TAXONOMY_FILE``, read once a process (``vocabulary.cache_clear()`` re-reads)."""
    return read(config.load(config.Settings).taxonomy_file)


def tags() -> dict[str, ModelTag]:
    return vocabulary().tags


def labels() -> tuple[str, ...]:
    return vocabulary().label_names


def label_keys() -> dict[str, str]:
    return vocabulary().keys


def default_tag() -> str:
    return vocabulary().default_tag


def check_label(label: str) -> str:
    if label not in labels():
        raise InvalidArgument(f"unknown label {label!r}; expected one of {', '.join(labels())}")
    return label


def get_tag(name: str) -> ModelTag:
    try:
        return tags()[name]
    except KeyError:
        raise InvalidArgument(f"unknown model tag {name!r}; expected one of {', '.join(tags())}") from None
