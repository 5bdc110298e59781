from skysift.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EnrichRequest(_message.Message):
    __slots__ = ("alerts_key",)
    ALERTS_KEY_FIELD_NUMBER: _ClassVar[int]
    alerts_key: str
    def __init__(self, alerts_key: _Optional[str] = ...) -> None: ...

class EnrichResponse(_message.Message):
    __slots__ = ("enriched", "status_counts")
    class StatusCountsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    ENRICHED_FIELD_NUMBER: _ClassVar[int]
    STATUS_COUNTS_FIELD_NUMBER: _ClassVar[int]
    enriched: _common_pb2.BatchRef
    status_counts: _containers.ScalarMap[str, int]
    def __init__(self, enriched: _Optional[_Union[_common_pb2.BatchRef, _Mapping]] = ..., status_counts: _Optional[_Mapping[str, int]] = ...) -> None: ...
