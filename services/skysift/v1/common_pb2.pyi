from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class BatchRef(_message.Message):
    __slots__ = ("key", "survey", "rows")
    KEY_FIELD_NUMBER: _ClassVar[int]
    SURVEY_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    key: str
    survey: str
    rows: int
    def __init__(self, key: _Optional[str] = ..., survey: _Optional[str] = ..., rows: _Optional[int] = ...) -> None: ...
