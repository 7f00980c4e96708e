import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from switchboard_client.v1 import catalog_pb2 as _catalog_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class LedgerEntryKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LEDGER_ENTRY_KIND_UNSPECIFIED: _ClassVar[LedgerEntryKind]
    LEDGER_ENTRY_KIND_ALLOWANCE_GRANT: _ClassVar[LedgerEntryKind]
    LEDGER_ENTRY_KIND_ALLOWANCE_EXPIRE: _ClassVar[LedgerEntryKind]
    LEDGER_ENTRY_KIND_TOP_UP: _ClassVar[LedgerEntryKind]
    LEDGER_ENTRY_KIND_HOLD: _ClassVar[LedgerEntryKind]
    LEDGER_ENTRY_KIND_CHARGE: _ClassVar[LedgerEntryKind]
    LEDGER_ENTRY_KIND_RELEASE: _ClassVar[LedgerEntryKind]

class UsageGroupBy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    USAGE_GROUP_BY_UNSPECIFIED: _ClassVar[UsageGroupBy]
    USAGE_GROUP_BY_MODEL: _ClassVar[UsageGroupBy]
    USAGE_GROUP_BY_MODALITY: _ClassVar[UsageGroupBy]
    USAGE_GROUP_BY_TIER: _ClassVar[UsageGroupBy]
    USAGE_GROUP_BY_DAY: _ClassVar[UsageGroupBy]
    USAGE_GROUP_BY_ACCOUNT: _ClassVar[UsageGroupBy]
LEDGER_ENTRY_KIND_UNSPECIFIED: LedgerEntryKind
LEDGER_ENTRY_KIND_ALLOWANCE_GRANT: LedgerEntryKind
LEDGER_ENTRY_KIND_ALLOWANCE_EXPIRE: LedgerEntryKind
LEDGER_ENTRY_KIND_TOP_UP: LedgerEntryKind
LEDGER_ENTRY_KIND_HOLD: LedgerEntryKind
LEDGER_ENTRY_KIND_CHARGE: LedgerEntryKind
LEDGER_ENTRY_KIND_RELEASE: LedgerEntryKind
USAGE_GROUP_BY_UNSPECIFIED: UsageGroupBy
USAGE_GROUP_BY_MODEL: UsageGroupBy
USAGE_GROUP_BY_MODALITY: UsageGroupBy
USAGE_GROUP_BY_TIER: UsageGroupBy
USAGE_GROUP_BY_DAY: UsageGroupBy
USAGE_GROUP_BY_ACCOUNT: UsageGroupBy

class Account(_message.Message):
    __slots__ = ("account_id", "plan_id", "balance", "allowance_credits", "topup_credits", "held_credits", "period_start", "period_end", "requests_in_flight")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    PLAN_ID_FIELD_NUMBER: _ClassVar[int]
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    ALLOWANCE_CREDITS_FIELD_NUMBER: _ClassVar[int]
    TOPUP_CREDITS_FIELD_NUMBER: _ClassVar[int]
    HELD_CREDITS_FIELD_NUMBER: _ClassVar[int]
    PERIOD_START_FIELD_NUMBER: _ClassVar[int]
    PERIOD_END_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    plan_id: str
    balance: int
    allowance_credits: int
    topup_credits: int
    held_credits: int
    period_start: _timestamp_pb2.Timestamp
    period_end: _timestamp_pb2.Timestamp
    requests_in_flight: int
    def __init__(self, account_id: _Optional[str] = ..., plan_id: _Optional[str] = ..., balance: _Optional[int] = ..., allowance_credits: _Optional[int] = ..., topup_credits: _Optional[int] = ..., held_credits: _Optional[int] = ..., period_start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., period_end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., requests_in_flight: _Optional[int] = ...) -> None: ...

class CreateAccountRequest(_message.Message):
    __slots__ = ("account_id", "plan_id")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    PLAN_ID_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    plan_id: str
    def __init__(self, account_id: _Optional[str] = ..., plan_id: _Optional[str] = ...) -> None: ...

class CreateAccountResponse(_message.Message):
    __slots__ = ("account",)
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    account: Account
    def __init__(self, account: _Optional[_Union[Account, _Mapping]] = ...) -> None: ...

class UpdateAccountPlanRequest(_message.Message):
    __slots__ = ("account_id", "plan_id")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    PLAN_ID_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    plan_id: str
    def __init__(self, account_id: _Optional[str] = ..., plan_id: _Optional[str] = ...) -> None: ...

class UpdateAccountPlanResponse(_message.Message):
    __slots__ = ("account",)
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    account: Account
    def __init__(self, account: _Optional[_Union[Account, _Mapping]] = ...) -> None: ...

class GetAccountRequest(_message.Message):
    __slots__ = ("account_id",)
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    def __init__(self, account_id: _Optional[str] = ...) -> None: ...

class GetAccountResponse(_message.Message):
    __slots__ = ("account",)
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    account: Account
    def __init__(self, account: _Optional[_Union[Account, _Mapping]] = ...) -> None: ...

class GrantCreditsRequest(_message.Message):
    __slots__ = ("account_id", "credits", "idempotency_key", "note")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    CREDITS_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    credits: int
    idempotency_key: str
    note: str
    def __init__(self, account_id: _Optional[str] = ..., credits: _Optional[int] = ..., idempotency_key: _Optional[str] = ..., note: _Optional[str] = ...) -> None: ...

class GrantCreditsResponse(_message.Message):
    __slots__ = ("account", "applied")
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    account: Account
    applied: bool
    def __init__(self, account: _Optional[_Union[Account, _Mapping]] = ..., applied: _Optional[bool] = ...) -> None: ...

class LedgerEntry(_message.Message):
    __slots__ = ("sequence", "account_id", "kind", "amount", "allowance_delta", "topup_delta", "credits", "request_id", "idempotency_key", "note", "create_time")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    ALLOWANCE_DELTA_FIELD_NUMBER: _ClassVar[int]
    TOPUP_DELTA_FIELD_NUMBER: _ClassVar[int]
    CREDITS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    account_id: str
    kind: LedgerEntryKind
    amount: int
    allowance_delta: int
    topup_delta: int
    credits: int
    request_id: str
    idempotency_key: str
    note: str
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, sequence: _Optional[int] = ..., account_id: _Optional[str] = ..., kind: _Optional[_Union[LedgerEntryKind, str]] = ..., amount: _Optional[int] = ..., allowance_delta: _Optional[int] = ..., topup_delta: _Optional[int] = ..., credits: _Optional[int] = ..., request_id: _Optional[str] = ..., idempotency_key: _Optional[str] = ..., note: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListLedgerEntriesRequest(_message.Message):
    __slots__ = ("account_id", "page_size", "page_token")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    page_size: int
    page_token: str
    def __init__(self, account_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListLedgerEntriesResponse(_message.Message):
    __slots__ = ("entries", "next_page_token")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[LedgerEntry]
    next_page_token: str
    def __init__(self, entries: _Optional[_Iterable[_Union[LedgerEntry, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetUsageRequest(_message.Message):
    __slots__ = ("account_id", "model_id", "start_time", "end_time", "group_by", "page_size", "page_token")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    GROUP_BY_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    model_id: str
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    group_by: UsageGroupBy
    page_size: int
    page_token: str
    def __init__(self, account_id: _Optional[str] = ..., model_id: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., group_by: _Optional[_Union[UsageGroupBy, str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class UsageGroup(_message.Message):
    __slots__ = ("model_id", "modality", "tier", "day", "account_id", "requests", "credits", "input_tokens", "output_tokens")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    MODALITY_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    DAY_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    CREDITS_FIELD_NUMBER: _ClassVar[int]
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    modality: _catalog_pb2.Modality
    tier: _catalog_pb2.Tier
    day: str
    account_id: str
    requests: int
    credits: int
    input_tokens: int
    output_tokens: int
    def __init__(self, model_id: _Optional[str] = ..., modality: _Optional[_Union[_catalog_pb2.Modality, str]] = ..., tier: _Optional[_Union[_catalog_pb2.Tier, str]] = ..., day: _Optional[str] = ..., account_id: _Optional[str] = ..., requests: _Optional[int] = ..., credits: _Optional[int] = ..., input_tokens: _Optional[int] = ..., output_tokens: _Optional[int] = ...) -> None: ...

class GetUsageResponse(_message.Message):
    __slots__ = ("start_time", "end_time", "groups", "next_page_token", "total", "top_up_credits", "allowance_granted_credits", "allowance_expired_credits")
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    TOP_UP_CREDITS_FIELD_NUMBER: _ClassVar[int]
    ALLOWANCE_GRANTED_CREDITS_FIELD_NUMBER: _ClassVar[int]
    ALLOWANCE_EXPIRED_CREDITS_FIELD_NUMBER: _ClassVar[int]
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    groups: _containers.RepeatedCompositeFieldContainer[UsageGroup]
    next_page_token: str
    total: UsageGroup
    top_up_credits: int
    allowance_granted_credits: int
    allowance_expired_credits: int
    def __init__(self, start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., groups: _Optional[_Iterable[_Union[UsageGroup, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., total: _Optional[_Union[UsageGroup, _Mapping]] = ..., top_up_credits: _Optional[int] = ..., allowance_granted_credits: _Optional[int] = ..., allowance_expired_credits: _Optional[int] = ...) -> None: ...
