from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ResourceRef(_message.Message):
    __slots__ = ("type_url", "name")
    TYPE_URL_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    type_url: str
    name: str
    def __init__(self, type_url: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class Resource(_message.Message):
    __slots__ = ("type_url", "name", "version", "body", "absent", "aliases", "variant", "refs")
    TYPE_URL_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    ABSENT_FIELD_NUMBER: _ClassVar[int]
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    VARIANT_FIELD_NUMBER: _ClassVar[int]
    REFS_FIELD_NUMBER: _ClassVar[int]
    type_url: str
    name: str
    version: str
    body: bytes
    absent: bool
    aliases: _containers.RepeatedScalarFieldContainer[str]
    variant: str
    refs: _containers.RepeatedCompositeFieldContainer[ResourceRef]
    def __init__(self, type_url: _Optional[str] = ..., name: _Optional[str] = ..., version: _Optional[str] = ..., body: _Optional[bytes] = ..., absent: _Optional[bool] = ..., aliases: _Optional[_Iterable[str]] = ..., variant: _Optional[str] = ..., refs: _Optional[_Iterable[_Union[ResourceRef, _Mapping]]] = ...) -> None: ...

class PolicyRevision(_message.Message):
    __slots__ = ("document", "revision")
    DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    document: str
    revision: int
    def __init__(self, document: _Optional[str] = ..., revision: _Optional[int] = ...) -> None: ...

class PolicyVariant(_message.Message):
    __slots__ = ("kind", "left_out")
    KIND_FIELD_NUMBER: _ClassVar[int]
    LEFT_OUT_FIELD_NUMBER: _ClassVar[int]
    kind: str
    left_out: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, kind: _Optional[str] = ..., left_out: _Optional[_Iterable[str]] = ...) -> None: ...

class SnapshotPolicy(_message.Message):
    __slots__ = ("digest", "revisions", "variants")
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    REVISIONS_FIELD_NUMBER: _ClassVar[int]
    VARIANTS_FIELD_NUMBER: _ClassVar[int]
    digest: str
    revisions: _containers.RepeatedCompositeFieldContainer[PolicyRevision]
    variants: _containers.RepeatedCompositeFieldContainer[PolicyVariant]
    def __init__(self, digest: _Optional[str] = ..., revisions: _Optional[_Iterable[_Union[PolicyRevision, _Mapping]]] = ..., variants: _Optional[_Iterable[_Union[PolicyVariant, _Mapping]]] = ...) -> None: ...

class Snapshot(_message.Message):
    __slots__ = ("key", "resources", "changed_at", "policy")
    KEY_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    CHANGED_AT_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    key: str
    resources: _containers.RepeatedCompositeFieldContainer[Resource]
    changed_at: float
    policy: SnapshotPolicy
    def __init__(self, key: _Optional[str] = ..., resources: _Optional[_Iterable[_Union[Resource, _Mapping]]] = ..., changed_at: _Optional[float] = ..., policy: _Optional[_Union[SnapshotPolicy, _Mapping]] = ...) -> None: ...

class SubscribeRequest(_message.Message):
    __slots__ = ("host", "incarnation", "keys")
    HOST_FIELD_NUMBER: _ClassVar[int]
    INCARNATION_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    host: str
    incarnation: str
    keys: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, host: _Optional[str] = ..., incarnation: _Optional[str] = ..., keys: _Optional[_Iterable[str]] = ...) -> None: ...

class SubscribeResponse(_message.Message):
    __slots__ = ("snapshots",)
    SNAPSHOTS_FIELD_NUMBER: _ClassVar[int]
    snapshots: _containers.RepeatedCompositeFieldContainer[Snapshot]
    def __init__(self, snapshots: _Optional[_Iterable[_Union[Snapshot, _Mapping]]] = ...) -> None: ...

class ResourceVersion(_message.Message):
    __slots__ = ("type_url", "name", "variant", "version")
    TYPE_URL_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    VARIANT_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    type_url: str
    name: str
    variant: str
    version: str
    def __init__(self, type_url: _Optional[str] = ..., name: _Optional[str] = ..., variant: _Optional[str] = ..., version: _Optional[str] = ...) -> None: ...

class HeldVersions(_message.Message):
    __slots__ = ("resources",)
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    resources: _containers.RepeatedCompositeFieldContainer[ResourceVersion]
    def __init__(self, resources: _Optional[_Iterable[_Union[ResourceVersion, _Mapping]]] = ...) -> None: ...

class UpdatesRequest(_message.Message):
    __slots__ = ("host", "incarnation", "held")
    class HeldEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: HeldVersions
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[HeldVersions, _Mapping]] = ...) -> None: ...
    HOST_FIELD_NUMBER: _ClassVar[int]
    INCARNATION_FIELD_NUMBER: _ClassVar[int]
    HELD_FIELD_NUMBER: _ClassVar[int]
    host: str
    incarnation: str
    held: _containers.MessageMap[str, HeldVersions]
    def __init__(self, host: _Optional[str] = ..., incarnation: _Optional[str] = ..., held: _Optional[_Mapping[str, HeldVersions]] = ...) -> None: ...
