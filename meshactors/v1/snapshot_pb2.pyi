from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Resource(_message.Message):
    __slots__ = ("type_url", "name", "version", "body")
    TYPE_URL_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    type_url: str
    name: str
    version: str
    body: bytes
    def __init__(self, type_url: _Optional[str] = ..., name: _Optional[str] = ..., version: _Optional[str] = ..., body: _Optional[bytes] = ...) -> None: ...

class VipSnapshot(_message.Message):
    __slots__ = ("vip", "cluster", "load_assignment", "listener")
    VIP_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    LOAD_ASSIGNMENT_FIELD_NUMBER: _ClassVar[int]
    LISTENER_FIELD_NUMBER: _ClassVar[int]
    vip: str
    cluster: Resource
    load_assignment: Resource
    listener: Resource
    def __init__(self, vip: _Optional[str] = ..., cluster: _Optional[_Union[Resource, _Mapping]] = ..., load_assignment: _Optional[_Union[Resource, _Mapping]] = ..., listener: _Optional[_Union[Resource, _Mapping]] = ...) -> None: ...

class SubscribeRequest(_message.Message):
    __slots__ = ("host", "incarnation", "vips")
    HOST_FIELD_NUMBER: _ClassVar[int]
    INCARNATION_FIELD_NUMBER: _ClassVar[int]
    VIPS_FIELD_NUMBER: _ClassVar[int]
    host: str
    incarnation: str
    vips: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, host: _Optional[str] = ..., incarnation: _Optional[str] = ..., vips: _Optional[_Iterable[str]] = ...) -> None: ...

class SubscribeResponse(_message.Message):
    __slots__ = ("snapshots",)
    SNAPSHOTS_FIELD_NUMBER: _ClassVar[int]
    snapshots: _containers.RepeatedCompositeFieldContainer[VipSnapshot]
    def __init__(self, snapshots: _Optional[_Iterable[_Union[VipSnapshot, _Mapping]]] = ...) -> None: ...

class Versions(_message.Message):
    __slots__ = ("cluster", "load_assignment")
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    LOAD_ASSIGNMENT_FIELD_NUMBER: _ClassVar[int]
    cluster: str
    load_assignment: str
    def __init__(self, cluster: _Optional[str] = ..., load_assignment: _Optional[str] = ...) -> None: ...

class UpdatesRequest(_message.Message):
    __slots__ = ("host", "incarnation", "held")
    class HeldEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: Versions
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Versions, _Mapping]] = ...) -> None: ...
    HOST_FIELD_NUMBER: _ClassVar[int]
    INCARNATION_FIELD_NUMBER: _ClassVar[int]
    HELD_FIELD_NUMBER: _ClassVar[int]
    host: str
    incarnation: str
    held: _containers.MessageMap[str, Versions]
    def __init__(self, host: _Optional[str] = ..., incarnation: _Optional[str] = ..., held: _Optional[_Mapping[str, Versions]] = ...) -> None: ...
