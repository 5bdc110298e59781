from skysift.v1 import common_pb2 as _common_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ComputeFeaturesRequest(_message.Message):
    __slots__ = ("alerts_key", "enriched_key")
    ALERTS_KEY_FIELD_NUMBER: _ClassVar[int]
    ENRICHED_KEY_FIELD_NUMBER: _ClassVar[int]
    alerts_key: str
    enriched_key: str
    def __init__(self, alerts_key: _Optional[str] = ..., enriched_key: _Optional[str] = ...) -> None: ...

class ComputeFeaturesResponse(_message.Message):
    __slots__ = ("features", "feature_set_version", "n_flagged")
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    FEATURE_SET_VERSION_FIELD_NUMBER: _ClassVar[int]
    N_FLAGGED_FIELD_NUMBER: _ClassVar[int]
    features: _common_pb2.BatchRef
    feature_set_version: str
    n_flagged: int
    def __init__(self, features: _Optional[_Union[_common_pb2.BatchRef, _Mapping]] = ..., feature_set_version: _Optional[str] = ..., n_flagged: _Optional[int] = ...) -> None: ...
