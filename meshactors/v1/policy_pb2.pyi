from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ApplyRequest(_message.Message):
    __slots__ = ("text", "dry_run", "expected_revisions")
    class ExpectedRevisionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    TEXT_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_REVISIONS_FIELD_NUMBER: _ClassVar[int]
    text: str
    dry_run: bool
    expected_revisions: _containers.ScalarMap[str, int]
    def __init__(self, text: _Optional[str] = ..., dry_run: _Optional[bool] = ..., expected_revisions: _Optional[_Mapping[str, int]] = ...) -> None: ...

class PolicyChange(_message.Message):
    __slots__ = ("vip", "action", "diff", "previous_revision")
    class Action(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        ACTION_UNSPECIFIED: _ClassVar[PolicyChange.Action]
        ACTION_CREATED: _ClassVar[PolicyChange.Action]
        ACTION_UPDATED: _ClassVar[PolicyChange.Action]
        ACTION_UNCHANGED: _ClassVar[PolicyChange.Action]
    ACTION_UNSPECIFIED: PolicyChange.Action
    ACTION_CREATED: PolicyChange.Action
    ACTION_UPDATED: PolicyChange.Action
    ACTION_UNCHANGED: PolicyChange.Action
    VIP_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    DIFF_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_REVISION_FIELD_NUMBER: _ClassVar[int]
    vip: str
    action: PolicyChange.Action
    diff: str
    previous_revision: int
    def __init__(self, vip: _Optional[str] = ..., action: _Optional[_Union[PolicyChange.Action, str]] = ..., diff: _Optional[str] = ..., previous_revision: _Optional[int] = ...) -> None: ...

class Problem(_message.Message):
    __slots__ = ("vip", "field", "reason")
    VIP_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    vip: str
    field: str
    reason: str
    def __init__(self, vip: _Optional[str] = ..., field: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class ApplyResponse(_message.Message):
    __slots__ = ("changes", "problems", "revision")
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    PROBLEMS_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    changes: _containers.RepeatedCompositeFieldContainer[PolicyChange]
    problems: _containers.RepeatedCompositeFieldContainer[Problem]
    revision: int
    def __init__(self, changes: _Optional[_Iterable[_Union[PolicyChange, _Mapping]]] = ..., problems: _Optional[_Iterable[_Union[Problem, _Mapping]]] = ..., revision: _Optional[int] = ...) -> None: ...

class StoredPolicy(_message.Message):
    __slots__ = ("vip", "document_json", "mod_revision", "create_revision")
    VIP_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_JSON_FIELD_NUMBER: _ClassVar[int]
    MOD_REVISION_FIELD_NUMBER: _ClassVar[int]
    CREATE_REVISION_FIELD_NUMBER: _ClassVar[int]
    vip: str
    document_json: str
    mod_revision: int
    create_revision: int
    def __init__(self, vip: _Optional[str] = ..., document_json: _Optional[str] = ..., mod_revision: _Optional[int] = ..., create_revision: _Optional[int] = ...) -> None: ...

class GetPolicyRequest(_message.Message):
    __slots__ = ("vip",)
    VIP_FIELD_NUMBER: _ClassVar[int]
    vip: str
    def __init__(self, vip: _Optional[str] = ...) -> None: ...

class GetPolicyResponse(_message.Message):
    __slots__ = ("policy", "problems")
    POLICY_FIELD_NUMBER: _ClassVar[int]
    PROBLEMS_FIELD_NUMBER: _ClassVar[int]
    policy: StoredPolicy
    problems: _containers.RepeatedCompositeFieldContainer[Problem]
    def __init__(self, policy: _Optional[_Union[StoredPolicy, _Mapping]] = ..., problems: _Optional[_Iterable[_Union[Problem, _Mapping]]] = ...) -> None: ...

class ListPoliciesRequest(_message.Message):
    __slots__ = ("problems",)
    PROBLEMS_FIELD_NUMBER: _ClassVar[int]
    problems: bool
    def __init__(self, problems: _Optional[bool] = ...) -> None: ...

class ListPoliciesResponse(_message.Message):
    __slots__ = ("policies", "revision", "problems")
    POLICIES_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    PROBLEMS_FIELD_NUMBER: _ClassVar[int]
    policies: _containers.RepeatedCompositeFieldContainer[StoredPolicy]
    revision: int
    problems: _containers.RepeatedCompositeFieldContainer[Problem]
    def __init__(self, policies: _Optional[_Iterable[_Union[StoredPolicy, _Mapping]]] = ..., revision: _Optional[int] = ..., problems: _Optional[_Iterable[_Union[Problem, _Mapping]]] = ...) -> None: ...

class DeletePolicyRequest(_message.Message):
    __slots__ = ("vip", "expected_revision")
    VIP_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_REVISION_FIELD_NUMBER: _ClassVar[int]
    vip: str
    expected_revision: int
    def __init__(self, vip: _Optional[str] = ..., expected_revision: _Optional[int] = ...) -> None: ...

class DeletePolicyResponse(_message.Message):
    __slots__ = ("revision",)
    REVISION_FIELD_NUMBER: _ClassVar[int]
    revision: int
    def __init__(self, revision: _Optional[int] = ...) -> None: ...
