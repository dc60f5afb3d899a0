from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SignRequest(_message.Message):
    __slots__ = ("csr_pem", "ttl_seconds")
    CSR_PEM_FIELD_NUMBER: _ClassVar[int]
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    csr_pem: str
    ttl_seconds: int
    def __init__(self, csr_pem: _Optional[str] = ..., ttl_seconds: _Optional[int] = ...) -> None: ...

class SignResponse(_message.Message):
    __slots__ = ("certificate_pem", "bundle_pem", "spiffe_id", "not_before_ms", "not_after_ms", "renew_at_ms", "signing_serial")
    CERTIFICATE_PEM_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_PEM_FIELD_NUMBER: _ClassVar[int]
    SPIFFE_ID_FIELD_NUMBER: _ClassVar[int]
    NOT_BEFORE_MS_FIELD_NUMBER: _ClassVar[int]
    NOT_AFTER_MS_FIELD_NUMBER: _ClassVar[int]
    RENEW_AT_MS_FIELD_NUMBER: _ClassVar[int]
    SIGNING_SERIAL_FIELD_NUMBER: _ClassVar[int]
    certificate_pem: str
    bundle_pem: str
    spiffe_id: str
    not_before_ms: int
    not_after_ms: int
    renew_at_ms: int
    signing_serial: str
    def __init__(self, certificate_pem: _Optional[str] = ..., bundle_pem: _Optional[str] = ..., spiffe_id: _Optional[str] = ..., not_before_ms: _Optional[int] = ..., not_after_ms: _Optional[int] = ..., renew_at_ms: _Optional[int] = ..., signing_serial: _Optional[str] = ...) -> None: ...

class BundleRequest(_message.Message):
    __slots__ = ("check_interval_seconds",)
    CHECK_INTERVAL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    check_interval_seconds: float
    def __init__(self, check_interval_seconds: _Optional[float] = ...) -> None: ...

class BundleResponse(_message.Message):
    __slots__ = ("bundle_pem", "trust_domain", "signing_serial")
    BUNDLE_PEM_FIELD_NUMBER: _ClassVar[int]
    TRUST_DOMAIN_FIELD_NUMBER: _ClassVar[int]
    SIGNING_SERIAL_FIELD_NUMBER: _ClassVar[int]
    bundle_pem: str
    trust_domain: str
    signing_serial: str
    def __init__(self, bundle_pem: _Optional[str] = ..., trust_domain: _Optional[str] = ..., signing_serial: _Optional[str] = ...) -> None: ...

class ShowRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CaRoot(_message.Message):
    __slots__ = ("serial", "fingerprint_sha256", "not_before_ms", "not_after_ms", "signing")
    SERIAL_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_SHA256_FIELD_NUMBER: _ClassVar[int]
    NOT_BEFORE_MS_FIELD_NUMBER: _ClassVar[int]
    NOT_AFTER_MS_FIELD_NUMBER: _ClassVar[int]
    SIGNING_FIELD_NUMBER: _ClassVar[int]
    serial: str
    fingerprint_sha256: str
    not_before_ms: int
    not_after_ms: int
    signing: bool
    def __init__(self, serial: _Optional[str] = ..., fingerprint_sha256: _Optional[str] = ..., not_before_ms: _Optional[int] = ..., not_after_ms: _Optional[int] = ..., signing: _Optional[bool] = ...) -> None: ...

class IssuedIdentity(_message.Message):
    __slots__ = ("spiffe_id", "serial", "not_before_ms", "not_after_ms", "issued_ms", "issuer_serial", "active")
    SPIFFE_ID_FIELD_NUMBER: _ClassVar[int]
    SERIAL_FIELD_NUMBER: _ClassVar[int]
    NOT_BEFORE_MS_FIELD_NUMBER: _ClassVar[int]
    NOT_AFTER_MS_FIELD_NUMBER: _ClassVar[int]
    ISSUED_MS_FIELD_NUMBER: _ClassVar[int]
    ISSUER_SERIAL_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    spiffe_id: str
    serial: str
    not_before_ms: int
    not_after_ms: int
    issued_ms: int
    issuer_serial: str
    active: bool
    def __init__(self, spiffe_id: _Optional[str] = ..., serial: _Optional[str] = ..., not_before_ms: _Optional[int] = ..., not_after_ms: _Optional[int] = ..., issued_ms: _Optional[int] = ..., issuer_serial: _Optional[str] = ..., active: _Optional[bool] = ...) -> None: ...

class ShowResponse(_message.Message):
    __slots__ = ("trust_domain", "leaf_ttl_seconds", "roots", "identities", "now_ms")
    TRUST_DOMAIN_FIELD_NUMBER: _ClassVar[int]
    LEAF_TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ROOTS_FIELD_NUMBER: _ClassVar[int]
    IDENTITIES_FIELD_NUMBER: _ClassVar[int]
    NOW_MS_FIELD_NUMBER: _ClassVar[int]
    trust_domain: str
    leaf_ttl_seconds: int
    roots: _containers.RepeatedCompositeFieldContainer[CaRoot]
    identities: _containers.RepeatedCompositeFieldContainer[IssuedIdentity]
    now_ms: int
    def __init__(self, trust_domain: _Optional[str] = ..., leaf_ttl_seconds: _Optional[int] = ..., roots: _Optional[_Iterable[_Union[CaRoot, _Mapping]]] = ..., identities: _Optional[_Iterable[_Union[IssuedIdentity, _Mapping]]] = ..., now_ms: _Optional[int] = ...) -> None: ...

class RotateRequest(_message.Message):
    __slots__ = ("step", "force")
    STEP_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    step: str
    force: bool
    def __init__(self, step: _Optional[str] = ..., force: _Optional[bool] = ...) -> None: ...

class RotateResponse(_message.Message):
    __slots__ = ("roots", "signing_serial", "now_ms")
    ROOTS_FIELD_NUMBER: _ClassVar[int]
    SIGNING_SERIAL_FIELD_NUMBER: _ClassVar[int]
    NOW_MS_FIELD_NUMBER: _ClassVar[int]
    roots: _containers.RepeatedCompositeFieldContainer[CaRoot]
    signing_serial: str
    now_ms: int
    def __init__(self, roots: _Optional[_Iterable[_Union[CaRoot, _Mapping]]] = ..., signing_serial: _Optional[str] = ..., now_ms: _Optional[int] = ...) -> None: ...
