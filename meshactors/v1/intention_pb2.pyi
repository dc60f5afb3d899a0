from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Intention(_message.Message):
    __slots__ = ("source", "destination", "action")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    source: str
    destination: str
    action: str
    def __init__(self, source: _Optional[str] = ..., destination: _Optional[str] = ..., action: _Optional[str] = ...) -> None: ...

class SetIntentionRequest(_message.Message):
    __slots__ = ("intention",)
    INTENTION_FIELD_NUMBER: _ClassVar[int]
    intention: Intention
    def __init__(self, intention: _Optional[_Union[Intention, _Mapping]] = ...) -> None: ...

class SetIntentionResponse(_message.Message):
    __slots__ = ("revision", "previous_action")
    REVISION_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_ACTION_FIELD_NUMBER: _ClassVar[int]
    revision: int
    previous_action: str
    def __init__(self, revision: _Optional[int] = ..., previous_action: _Optional[str] = ...) -> None: ...

class DeleteIntentionRequest(_message.Message):
    __slots__ = ("source", "destination")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    source: str
    destination: str
    def __init__(self, source: _Optional[str] = ..., destination: _Optional[str] = ...) -> None: ...

class DeleteIntentionResponse(_message.Message):
    __slots__ = ("revision",)
    REVISION_FIELD_NUMBER: _ClassVar[int]
    revision: int
    def __init__(self, revision: _Optional[int] = ...) -> None: ...

class ListIntentionsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListIntentionsResponse(_message.Message):
    __slots__ = ("intentions", "default_action", "default_stored", "revision")
    INTENTIONS_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_ACTION_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_STORED_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    intentions: _containers.RepeatedCompositeFieldContainer[Intention]
    default_action: str
    default_stored: bool
    revision: int
    def __init__(self, intentions: _Optional[_Iterable[_Union[Intention, _Mapping]]] = ..., default_action: _Optional[str] = ..., default_stored: _Optional[bool] = ..., revision: _Optional[int] = ...) -> None: ...

class SetDefaultRequest(_message.Message):
    __slots__ = ("action",)
    ACTION_FIELD_NUMBER: _ClassVar[int]
    action: str
    def __init__(self, action: _Optional[str] = ...) -> None: ...

class SetDefaultResponse(_message.Message):
    __slots__ = ("revision",)
    REVISION_FIELD_NUMBER: _ClassVar[int]
    revision: int
    def __init__(self, revision: _Optional[int] = ...) -> None: ...
