from skysift.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PollRequest(_message.Message):
    __slots__ = ("max_alerts", "timeout_seconds", "replay_path", "keep_cutouts", "filter", "champions")
    MAX_ALERTS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    REPLAY_PATH_FIELD_NUMBER: _ClassVar[int]
    KEEP_CUTOUTS_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    CHAMPIONS_FIELD_NUMBER: _ClassVar[int]
    max_alerts: int
    timeout_seconds: float
    replay_path: str
    keep_cutouts: bool
    filter: str
    champions: _containers.RepeatedCompositeFieldContainer[ChampionVersion]
    def __init__(self, max_alerts: _Optional[int] = ..., timeout_seconds: _Optional[float] = ..., replay_path: _Optional[str] = ..., keep_cutouts: _Optional[bool] = ..., filter: _Optional[str] = ..., champions: _Optional[_Iterable[_Union[ChampionVersion, _Mapping]]] = ...) -> None: ...

class ChampionVersion(_message.Message):
    __slots__ = ("model_name", "model_version")
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    model_version: str
    def __init__(self, model_name: _Optional[str] = ..., model_version: _Optional[str] = ...) -> None: ...

class PollResponse(_message.Message):
    __slots__ = ("alerts", "cutouts", "n_messages", "n_alerts", "n_rejected", "n_duplicates", "n_dead_letters", "dlq_key", "behind", "n_behind")
    ALERTS_FIELD_NUMBER: _ClassVar[int]
    CUTOUTS_FIELD_NUMBER: _ClassVar[int]
    N_MESSAGES_FIELD_NUMBER: _ClassVar[int]
    N_ALERTS_FIELD_NUMBER: _ClassVar[int]
    N_REJECTED_FIELD_NUMBER: _ClassVar[int]
    N_DUPLICATES_FIELD_NUMBER: _ClassVar[int]
    N_DEAD_LETTERS_FIELD_NUMBER: _ClassVar[int]
    DLQ_KEY_FIELD_NUMBER: _ClassVar[int]
    BEHIND_FIELD_NUMBER: _ClassVar[int]
    N_BEHIND_FIELD_NUMBER: _ClassVar[int]
    alerts: _containers.RepeatedCompositeFieldContainer[_common_pb2.BatchRef]
    cutouts: _containers.RepeatedCompositeFieldContainer[_common_pb2.BatchRef]
    n_messages: int
    n_alerts: int
    n_rejected: int
    n_duplicates: int
    n_dead_letters: int
    dlq_key: str
    behind: _containers.RepeatedCompositeFieldContainer[BehindBatch]
    n_behind: int
    def __init__(self, alerts: _Optional[_Iterable[_Union[_common_pb2.BatchRef, _Mapping]]] = ..., cutouts: _Optional[_Iterable[_Union[_common_pb2.BatchRef, _Mapping]]] = ..., n_messages: _Optional[int] = ..., n_alerts: _Optional[int] = ..., n_rejected: _Optional[int] = ..., n_duplicates: _Optional[int] = ..., n_dead_letters: _Optional[int] = ..., dlq_key: _Optional[str] = ..., behind: _Optional[_Iterable[_Union[BehindBatch, _Mapping]]] = ..., n_behind: _Optional[int] = ...) -> None: ...

class BehindBatch(_message.Message):
    __slots__ = ("alerts_key", "survey", "missing")
    ALERTS_KEY_FIELD_NUMBER: _ClassVar[int]
    SURVEY_FIELD_NUMBER: _ClassVar[int]
    MISSING_FIELD_NUMBER: _ClassVar[int]
    alerts_key: str
    survey: str
    missing: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, alerts_key: _Optional[str] = ..., survey: _Optional[str] = ..., missing: _Optional[_Iterable[str]] = ...) -> None: ...
