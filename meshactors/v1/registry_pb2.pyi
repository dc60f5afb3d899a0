from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Status(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STATUS_UNSPECIFIED: _ClassVar[Status]
    STATUS_UP: _ClassVar[Status]
    STATUS_DOWN: _ClassVar[Status]
    STATUS_STARTING: _ClassVar[Status]
    STATUS_OUT_OF_SERVICE: _ClassVar[Status]
STATUS_UNSPECIFIED: Status
STATUS_UP: Status
STATUS_DOWN: Status
STATUS_STARTING: Status
STATUS_OUT_OF_SERVICE: Status

class LeaseSettings(_message.Message):
    __slots__ = ("renewal_interval_seconds", "duration_seconds")
    RENEWAL_INTERVAL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    DURATION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    renewal_interval_seconds: int
    duration_seconds: int
    def __init__(self, renewal_interval_seconds: _Optional[int] = ..., duration_seconds: _Optional[int] = ...) -> None: ...

class Instance(_message.Message):
    __slots__ = ("app", "instance_id", "vip", "svip", "host", "port", "secure_port", "zone", "status", "version_label", "weight", "metadata", "lease", "registered_at_ms", "mod_revision", "registered_by")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    APP_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    VIP_FIELD_NUMBER: _ClassVar[int]
    SVIP_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    SECURE_PORT_FIELD_NUMBER: _ClassVar[int]
    ZONE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    VERSION_LABEL_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    LEASE_FIELD_NUMBER: _ClassVar[int]
    REGISTERED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    MOD_REVISION_FIELD_NUMBER: _ClassVar[int]
    REGISTERED_BY_FIELD_NUMBER: _ClassVar[int]
    app: str
    instance_id: str
    vip: str
    svip: str
    host: str
    port: int
    secure_port: int
    zone: str
    status: Status
    version_label: str
    weight: int
    metadata: _containers.ScalarMap[str, str]
    lease: LeaseSettings
    registered_at_ms: int
    mod_revision: int
    registered_by: str
    def __init__(self, app: _Optional[str] = ..., instance_id: _Optional[str] = ..., vip: _Optional[str] = ..., svip: _Optional[str] = ..., host: _Optional[str] = ..., port: _Optional[int] = ..., secure_port: _Optional[int] = ..., zone: _Optional[str] = ..., status: _Optional[_Union[Status, str]] = ..., version_label: _Optional[str] = ..., weight: _Optional[int] = ..., metadata: _Optional[_Mapping[str, str]] = ..., lease: _Optional[_Union[LeaseSettings, _Mapping]] = ..., registered_at_ms: _Optional[int] = ..., mod_revision: _Optional[int] = ..., registered_by: _Optional[str] = ...) -> None: ...

class InstanceRef(_message.Message):
    __slots__ = ("vip", "instance_id")
    VIP_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    vip: str
    instance_id: str
    def __init__(self, vip: _Optional[str] = ..., instance_id: _Optional[str] = ...) -> None: ...

class RegisterRequest(_message.Message):
    __slots__ = ("instance",)
    INSTANCE_FIELD_NUMBER: _ClassVar[int]
    instance: Instance
    def __init__(self, instance: _Optional[_Union[Instance, _Mapping]] = ...) -> None: ...

class RegisterResponse(_message.Message):
    __slots__ = ("instance", "ref", "revision")
    INSTANCE_FIELD_NUMBER: _ClassVar[int]
    REF_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    instance: Instance
    ref: InstanceRef
    revision: int
    def __init__(self, instance: _Optional[_Union[Instance, _Mapping]] = ..., ref: _Optional[_Union[InstanceRef, _Mapping]] = ..., revision: _Optional[int] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("ref",)
    REF_FIELD_NUMBER: _ClassVar[int]
    ref: InstanceRef
    def __init__(self, ref: _Optional[_Union[InstanceRef, _Mapping]] = ...) -> None: ...

class HeartbeatResponse(_message.Message):
    __slots__ = ("ttl_seconds",)
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ttl_seconds: int
    def __init__(self, ttl_seconds: _Optional[int] = ...) -> None: ...

class HeartbeatBatchRequest(_message.Message):
    __slots__ = ("refs",)
    REFS_FIELD_NUMBER: _ClassVar[int]
    refs: _containers.RepeatedCompositeFieldContainer[InstanceRef]
    def __init__(self, refs: _Optional[_Iterable[_Union[InstanceRef, _Mapping]]] = ...) -> None: ...

class HeartbeatResult(_message.Message):
    __slots__ = ("ttl_seconds", "code", "message")
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ttl_seconds: int
    code: int
    message: str
    def __init__(self, ttl_seconds: _Optional[int] = ..., code: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class HeartbeatBatchResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[HeartbeatResult]
    def __init__(self, results: _Optional[_Iterable[_Union[HeartbeatResult, _Mapping]]] = ...) -> None: ...

class DeregisterRequest(_message.Message):
    __slots__ = ("ref",)
    REF_FIELD_NUMBER: _ClassVar[int]
    ref: InstanceRef
    def __init__(self, ref: _Optional[_Union[InstanceRef, _Mapping]] = ...) -> None: ...

class DeregisterResponse(_message.Message):
    __slots__ = ("revision",)
    REVISION_FIELD_NUMBER: _ClassVar[int]
    revision: int
    def __init__(self, revision: _Optional[int] = ...) -> None: ...

class SetStatusRequest(_message.Message):
    __slots__ = ("ref", "status")
    REF_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ref: InstanceRef
    status: Status
    def __init__(self, ref: _Optional[_Union[InstanceRef, _Mapping]] = ..., status: _Optional[_Union[Status, str]] = ...) -> None: ...

class SetStatusResponse(_message.Message):
    __slots__ = ("instance", "revision")
    INSTANCE_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    instance: Instance
    revision: int
    def __init__(self, instance: _Optional[_Union[Instance, _Mapping]] = ..., revision: _Optional[int] = ...) -> None: ...

class UpdateRequest(_message.Message):
    __slots__ = ("ref", "status", "set_metadata", "remove_metadata")
    class SetMetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    REF_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    SET_METADATA_FIELD_NUMBER: _ClassVar[int]
    REMOVE_METADATA_FIELD_NUMBER: _ClassVar[int]
    ref: InstanceRef
    status: Status
    set_metadata: _containers.ScalarMap[str, str]
    remove_metadata: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, ref: _Optional[_Union[InstanceRef, _Mapping]] = ..., status: _Optional[_Union[Status, str]] = ..., set_metadata: _Optional[_Mapping[str, str]] = ..., remove_metadata: _Optional[_Iterable[str]] = ...) -> None: ...

class UpdateResponse(_message.Message):
    __slots__ = ("instance", "revision")
    INSTANCE_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    instance: Instance
    revision: int
    def __init__(self, instance: _Optional[_Union[Instance, _Mapping]] = ..., revision: _Optional[int] = ...) -> None: ...

class ListRequest(_message.Message):
    __slots__ = ("vip", "app", "page_size", "page_token")
    VIP_FIELD_NUMBER: _ClassVar[int]
    APP_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    vip: str
    app: str
    page_size: int
    page_token: str
    def __init__(self, vip: _Optional[str] = ..., app: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListResponse(_message.Message):
    __slots__ = ("instances", "revision", "next_page_token")
    INSTANCES_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    instances: _containers.RepeatedCompositeFieldContainer[Instance]
    revision: int
    next_page_token: str
    def __init__(self, instances: _Optional[_Iterable[_Union[Instance, _Mapping]]] = ..., revision: _Optional[int] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class WatchRequest(_message.Message):
    __slots__ = ("start_revision", "vip")
    START_REVISION_FIELD_NUMBER: _ClassVar[int]
    VIP_FIELD_NUMBER: _ClassVar[int]
    start_revision: int
    vip: str
    def __init__(self, start_revision: _Optional[int] = ..., vip: _Optional[str] = ...) -> None: ...

class WatchEvent(_message.Message):
    __slots__ = ("type", "instance", "ref", "revision")
    class Type(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        TYPE_UNSPECIFIED: _ClassVar[WatchEvent.Type]
        PUT: _ClassVar[WatchEvent.Type]
        DELETE: _ClassVar[WatchEvent.Type]
        SNAPSHOT: _ClassVar[WatchEvent.Type]
        SYNCED: _ClassVar[WatchEvent.Type]
    TYPE_UNSPECIFIED: WatchEvent.Type
    PUT: WatchEvent.Type
    DELETE: WatchEvent.Type
    SNAPSHOT: WatchEvent.Type
    SYNCED: WatchEvent.Type
    TYPE_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_FIELD_NUMBER: _ClassVar[int]
    REF_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    type: WatchEvent.Type
    instance: Instance
    ref: InstanceRef
    revision: int
    def __init__(self, type: _Optional[_Union[WatchEvent.Type, str]] = ..., instance: _Optional[_Union[Instance, _Mapping]] = ..., ref: _Optional[_Union[InstanceRef, _Mapping]] = ..., revision: _Optional[int] = ...) -> None: ...
