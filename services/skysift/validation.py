"""One rule per request field, in one place: every entry point that takes the field (gRPC method, CLI, core
call) checks it here, so a value one method accepts is never refused by another (issue 17: SubmitLabels took
experiment ``../../etc`` and round -1 that GetQueue refused). Each check returns the value or raises
:class:`~skysift.errors.InvalidArgument` naming the field and the rule, quoting at most a bounded prefix of the
value (a 1 MB comment is not echoed back).
"""

from __future__ import annotations

import math
import re

from skysift.errors import InvalidArgument

EXPERIMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")  # a path segment of rounds/<experiment>/; fullmatch only
OBJECT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:+-]{0,63}")  # ZTF18abcdefgh, a Rubin diaObjectId, ...
# An MLflow registered model name (skysift's are <prefix>_<tag>) and a version number
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
MODEL_VERSION = re.compile(r"[1-9][0-9]{0,8}")
MAX_CHAMPIONS = 64  # one per model tag
MAX_ROUND = 100_000
MAX_TIMEOUT_S = 86_400.0  # a poll of a day is a mistake, and 1e308 s overflows the deadline arithmetic
MAX_COMMENT_CHARS = 2_000
MAX_DATASET_NAME_CHARS = 200
MAX_LABELS_PER_CALL = 1_000  # one SubmitLabels; an import of more goes in several calls (or `skysift label import`)
QUOTE = 80  # characters of a refused value quoted in the message


def _quoted(value: str) -> str:
    return repr(value) if len(value) <= QUOTE else f"{value[:QUOTE]!r}... ({len(value)} characters)"


def check_experiment(name: str) -> str:
    if not EXPERIMENT.fullmatch(name or ""):
        raise InvalidArgument(f"invalid experiment name {_quoted(name or '')}: 1-64 letters, digits, '_', '.', '-', "
                              "starting with a letter or digit")
    return name


def check_round(number: int | None) -> int | None:
    """A round number (None: the latest / not given)."""
    if number is not None and not 0 <= number <= MAX_ROUND:
        raise InvalidArgument(f"round must be between 0 and {MAX_ROUND}, got {number}")
    return number


def check_survey(name: str, allow_all: bool = True) -> str:
    """A survey skysift knows (``""`` means every survey where ``allow_all``)."""
    from skysift.alerts import surveys

    if (name == "" and allow_all) or name in surveys.names():
        return name
    raise InvalidArgument(f"unknown survey {_quoted(name)}; expected one of {', '.join(sorted(surveys.names()))}"
                          + (" (or empty for all)" if allow_all else ""))


def check_timeout(seconds: float, name: str = "timeout_seconds") -> float:
    """A duration in seconds, 0 meaning the configured default."""
    if not (math.isfinite(seconds) and 0 <= seconds <= MAX_TIMEOUT_S):
        raise InvalidArgument(f"{name} must be between 0 and {MAX_TIMEOUT_S:g} seconds (0: the configured default), "
                              f"got {seconds!r}")
    return seconds


def check_count(value: int, name: str) -> int:
    """A count where 0 means the configured default."""
    if value < 0:
        raise InvalidArgument(f"{name} must not be negative (0: the configured default), got {value}")
    return value


def check_object_id(object_id: str) -> str:
    """An alert's objectId, or empty when not given."""
    if object_id and not OBJECT_ID.fullmatch(object_id):
        raise InvalidArgument(f"invalid objectId {_quoted(object_id)}: 1-64 letters, digits, '_', '.', ':', '+', '-'")
    return object_id


def check_comment(text: str) -> str:
    if len(text) > MAX_COMMENT_CHARS:
        raise InvalidArgument(f"a comment may hold {MAX_COMMENT_CHARS} characters, got {len(text)}")
    return text


def check_dataset_name(name: str) -> str:
    if not name.strip():
        raise InvalidArgument("a dataset needs a name")
    if len(name) > MAX_DATASET_NAME_CHARS or not name.isprintable():
        raise InvalidArgument(f"a dataset name is at most {MAX_DATASET_NAME_CHARS} printable characters, "
                              f"got {_quoted(name)}")
    return name


def check_labels_per_call(n: int) -> int:
    if n > MAX_LABELS_PER_CALL:
        raise InvalidArgument(f"at most {MAX_LABELS_PER_CALL} labels per call, got {n}: submit them in parts")
    return n


def check_champions(champions: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Registered models' names and versions, as a poll's champions name them (each costs the poll a listing)."""
    if len(champions) > MAX_CHAMPIONS:
        raise InvalidArgument(f"at most {MAX_CHAMPIONS} champions per poll, got {len(champions)}")
    for name, version in champions:
        if not MODEL_NAME.fullmatch(name) or not MODEL_VERSION.fullmatch(version):
            raise InvalidArgument(f"invalid champion {_quoted(name)} v{_quoted(version)}: a model name of 1-128 "
                                  "letters, digits, '_', '.', '-' and a version number")
    return champions
