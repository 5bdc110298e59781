from skysift.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ScoreRequest(_message.Message):
    __slots__ = ("features_key", "model_tags", "skip_write", "packed")
    FEATURES_KEY_FIELD_NUMBER: _ClassVar[int]
    MODEL_TAGS_FIELD_NUMBER: _ClassVar[int]
    SKIP_WRITE_FIELD_NUMBER: _ClassVar[int]
    PACKED_FIELD_NUMBER: _ClassVar[int]
    features_key: str
    model_tags: _containers.RepeatedScalarFieldContainer[str]
    skip_write: bool
    packed: bool
    def __init__(self, features_key: _Optional[str] = ..., model_tags: _Optional[_Iterable[str]] = ..., skip_write: _Optional[bool] = ..., packed: _Optional[bool] = ...) -> None: ...

class ScoreCandidsRequest(_message.Message):
    __slots__ = ("candids", "model_tags", "packed")
    CANDIDS_FIELD_NUMBER: _ClassVar[int]
    MODEL_TAGS_FIELD_NUMBER: _ClassVar[int]
    PACKED_FIELD_NUMBER: _ClassVar[int]
    candids: _containers.RepeatedScalarFieldContainer[int]
    model_tags: _containers.RepeatedScalarFieldContainer[str]
    packed: bool
    def __init__(self, candids: _Optional[_Iterable[int]] = ..., model_tags: _Optional[_Iterable[str]] = ..., packed: _Optional[bool] = ...) -> None: ...

class ScoreAlertsRequest(_message.Message):
    __slots__ = ("packets", "format", "schema_json", "model_tags", "enrich", "packed")
    PACKETS_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_JSON_FIELD_NUMBER: _ClassVar[int]
    MODEL_TAGS_FIELD_NUMBER: _ClassVar[int]
    ENRICH_FIELD_NUMBER: _ClassVar[int]
    PACKED_FIELD_NUMBER: _ClassVar[int]
    packets: _containers.RepeatedScalarFieldContainer[bytes]
    format: str
    schema_json: str
    model_tags: _containers.RepeatedScalarFieldContainer[str]
    enrich: bool
    packed: bool
    def __init__(self, packets: _Optional[_Iterable[bytes]] = ..., format: _Optional[str] = ..., schema_json: _Optional[str] = ..., model_tags: _Optional[_Iterable[str]] = ..., enrich: _Optional[bool] = ..., packed: _Optional[bool] = ...) -> None: ...

class ClassProbability(_message.Message):
    __slots__ = ("label", "probability", "parent")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    PARENT_FIELD_NUMBER: _ClassVar[int]
    label: str
    probability: float
    parent: str
    def __init__(self, label: _Optional[str] = ..., probability: _Optional[float] = ..., parent: _Optional[str] = ...) -> None: ...

class Prediction(_message.Message):
    __slots__ = ("candid", "object_id", "model_tag", "model_name", "model_version", "feature_set_version", "probabilities")
    CANDID_FIELD_NUMBER: _ClassVar[int]
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_TAG_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    FEATURE_SET_VERSION_FIELD_NUMBER: _ClassVar[int]
    PROBABILITIES_FIELD_NUMBER: _ClassVar[int]
    candid: int
    object_id: str
    model_tag: str
    model_name: str
    model_version: str
    feature_set_version: str
    probabilities: _containers.RepeatedCompositeFieldContainer[ClassProbability]
    def __init__(self, candid: _Optional[int] = ..., object_id: _Optional[str] = ..., model_tag: _Optional[str] = ..., model_name: _Optional[str] = ..., model_version: _Optional[str] = ..., feature_set_version: _Optional[str] = ..., probabilities: _Optional[_Iterable[_Union[ClassProbability, _Mapping]]] = ...) -> None: ...

class PackedPredictions(_message.Message):
    __slots__ = ("model_tag", "model_name", "model_version", "feature_set_version", "classes", "parents", "candids", "object_ids", "probabilities")
    MODEL_TAG_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    FEATURE_SET_VERSION_FIELD_NUMBER: _ClassVar[int]
    CLASSES_FIELD_NUMBER: _ClassVar[int]
    PARENTS_FIELD_NUMBER: _ClassVar[int]
    CANDIDS_FIELD_NUMBER: _ClassVar[int]
    OBJECT_IDS_FIELD_NUMBER: _ClassVar[int]
    PROBABILITIES_FIELD_NUMBER: _ClassVar[int]
    model_tag: str
    model_name: str
    model_version: str
    feature_set_version: str
    classes: _containers.RepeatedScalarFieldContainer[str]
    parents: _containers.RepeatedScalarFieldContainer[str]
    candids: _containers.RepeatedScalarFieldContainer[int]
    object_ids: _containers.RepeatedScalarFieldContainer[str]
    probabilities: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, model_tag: _Optional[str] = ..., model_name: _Optional[str] = ..., model_version: _Optional[str] = ..., feature_set_version: _Optional[str] = ..., classes: _Optional[_Iterable[str]] = ..., parents: _Optional[_Iterable[str]] = ..., candids: _Optional[_Iterable[int]] = ..., object_ids: _Optional[_Iterable[str]] = ..., probabilities: _Optional[_Iterable[float]] = ...) -> None: ...

class ScoreResponse(_message.Message):
    __slots__ = ("predictions", "written", "message", "packed")
    PREDICTIONS_FIELD_NUMBER: _ClassVar[int]
    WRITTEN_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    PACKED_FIELD_NUMBER: _ClassVar[int]
    predictions: _containers.RepeatedCompositeFieldContainer[Prediction]
    written: _common_pb2.BatchRef
    message: str
    packed: _containers.RepeatedCompositeFieldContainer[PackedPredictions]
    def __init__(self, predictions: _Optional[_Iterable[_Union[Prediction, _Mapping]]] = ..., written: _Optional[_Union[_common_pb2.BatchRef, _Mapping]] = ..., message: _Optional[str] = ..., packed: _Optional[_Iterable[_Union[PackedPredictions, _Mapping]]] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("model_tag", "model_name", "model_version", "feature_set_version", "classes")
    MODEL_TAG_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    FEATURE_SET_VERSION_FIELD_NUMBER: _ClassVar[int]
    CLASSES_FIELD_NUMBER: _ClassVar[int]
    model_tag: str
    model_name: str
    model_version: str
    feature_set_version: str
    classes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, model_tag: _Optional[str] = ..., model_name: _Optional[str] = ..., model_version: _Optional[str] = ..., feature_set_version: _Optional[str] = ..., classes: _Optional[_Iterable[str]] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelInfo]
    def __init__(self, models: _Optional[_Iterable[_Union[ModelInfo, _Mapping]]] = ...) -> None: ...
