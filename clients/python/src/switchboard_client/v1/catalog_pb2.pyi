from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Modality(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODALITY_UNSPECIFIED: _ClassVar[Modality]
    MODALITY_TEXT: _ClassVar[Modality]
    MODALITY_IMAGE: _ClassVar[Modality]
    MODALITY_VIDEO: _ClassVar[Modality]
    MODALITY_SPEECH: _ClassVar[Modality]

class Tier(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TIER_UNSPECIFIED: _ClassVar[Tier]
    TIER_LITE: _ClassVar[Tier]
    TIER_STANDARD: _ClassVar[Tier]
    TIER_ADVANCED: _ClassVar[Tier]

class Task(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TASK_UNSPECIFIED: _ClassVar[Task]
    TASK_FORMATTING: _ClassVar[Task]
    TASK_CLASSIFICATION: _ClassVar[Task]
    TASK_SUMMARY: _ClassVar[Task]
    TASK_CHAT: _ClassVar[Task]
    TASK_WRITING: _ClassVar[Task]
    TASK_REASONING: _ClassVar[Task]
    TASK_CODING: _ClassVar[Task]

class Capability(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CAPABILITY_UNSPECIFIED: _ClassVar[Capability]
    CAPABILITY_IMAGE_INPUT: _ClassVar[Capability]
    CAPABILITY_DOCUMENT_INPUT: _ClassVar[Capability]
    CAPABILITY_AUDIO_INPUT: _ClassVar[Capability]
    CAPABILITY_VIDEO_INPUT: _ClassVar[Capability]
    CAPABILITY_WEB_SEARCH: _ClassVar[Capability]
    CAPABILITY_STRUCTURED_OUTPUT: _ClassVar[Capability]
    CAPABILITY_TOOL_CALLING: _ClassVar[Capability]
    CAPABILITY_REASONING: _ClassVar[Capability]
    CAPABILITY_IMAGE_GENERATION: _ClassVar[Capability]
    CAPABILITY_IMAGE_EDITING: _ClassVar[Capability]
    CAPABILITY_TEXT_TO_VIDEO: _ClassVar[Capability]
    CAPABILITY_IMAGE_TO_VIDEO: _ClassVar[Capability]
    CAPABILITY_REFERENCE_IMAGES: _ClassVar[Capability]
    CAPABILITY_NATIVE_AUDIO: _ClassVar[Capability]
    CAPABILITY_MULTI_SHOT: _ClassVar[Capability]
    CAPABILITY_VIDEO_EDITING: _ClassVar[Capability]
    CAPABILITY_VIDEO_EXTENSION: _ClassVar[Capability]
    CAPABILITY_VIDEO_REFERENCE: _ClassVar[Capability]
    CAPABILITY_TEXT_TO_SPEECH: _ClassVar[Capability]

class ApiKeyRole(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    API_KEY_ROLE_UNSPECIFIED: _ClassVar[ApiKeyRole]
    API_KEY_ROLE_CALLER: _ClassVar[ApiKeyRole]
    API_KEY_ROLE_ADMIN: _ClassVar[ApiKeyRole]
MODALITY_UNSPECIFIED: Modality
MODALITY_TEXT: Modality
MODALITY_IMAGE: Modality
MODALITY_VIDEO: Modality
MODALITY_SPEECH: Modality
TIER_UNSPECIFIED: Tier
TIER_LITE: Tier
TIER_STANDARD: Tier
TIER_ADVANCED: Tier
TASK_UNSPECIFIED: Task
TASK_FORMATTING: Task
TASK_CLASSIFICATION: Task
TASK_SUMMARY: Task
TASK_CHAT: Task
TASK_WRITING: Task
TASK_REASONING: Task
TASK_CODING: Task
CAPABILITY_UNSPECIFIED: Capability
CAPABILITY_IMAGE_INPUT: Capability
CAPABILITY_DOCUMENT_INPUT: Capability
CAPABILITY_AUDIO_INPUT: Capability
CAPABILITY_VIDEO_INPUT: Capability
CAPABILITY_WEB_SEARCH: Capability
CAPABILITY_STRUCTURED_OUTPUT: Capability
CAPABILITY_TOOL_CALLING: Capability
CAPABILITY_REASONING: Capability
CAPABILITY_IMAGE_GENERATION: Capability
CAPABILITY_IMAGE_EDITING: Capability
CAPABILITY_TEXT_TO_VIDEO: Capability
CAPABILITY_IMAGE_TO_VIDEO: Capability
CAPABILITY_REFERENCE_IMAGES: Capability
CAPABILITY_NATIVE_AUDIO: Capability
CAPABILITY_MULTI_SHOT: Capability
CAPABILITY_VIDEO_EDITING: Capability
CAPABILITY_VIDEO_EXTENSION: Capability
CAPABILITY_VIDEO_REFERENCE: Capability
CAPABILITY_TEXT_TO_SPEECH: Capability
API_KEY_ROLE_UNSPECIFIED: ApiKeyRole
API_KEY_ROLE_CALLER: ApiKeyRole
API_KEY_ROLE_ADMIN: ApiKeyRole

class TaskTier(_message.Message):
    __slots__ = ("task", "tier")
    TASK_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    task: Task
    tier: Tier
    def __init__(self, task: _Optional[_Union[Task, str]] = ..., tier: _Optional[_Union[Tier, str]] = ...) -> None: ...

class Price(_message.Message):
    __slots__ = ("credits_per_request", "credits_per_1k_input_tokens", "credits_per_1k_output_tokens")
    CREDITS_PER_REQUEST_FIELD_NUMBER: _ClassVar[int]
    CREDITS_PER_1K_INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CREDITS_PER_1K_OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    credits_per_request: int
    credits_per_1k_input_tokens: int
    credits_per_1k_output_tokens: int
    def __init__(self, credits_per_request: _Optional[int] = ..., credits_per_1k_input_tokens: _Optional[int] = ..., credits_per_1k_output_tokens: _Optional[int] = ...) -> None: ...

class TierPrice(_message.Message):
    __slots__ = ("tier", "price", "modality")
    TIER_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    MODALITY_FIELD_NUMBER: _ClassVar[int]
    tier: Tier
    price: Price
    modality: Modality
    def __init__(self, tier: _Optional[_Union[Tier, str]] = ..., price: _Optional[_Union[Price, _Mapping]] = ..., modality: _Optional[_Union[Modality, str]] = ...) -> None: ...

class ModelLimits(_message.Message):
    __slots__ = ("context_window_tokens", "max_output_tokens", "languages")
    CONTEXT_WINDOW_TOKENS_FIELD_NUMBER: _ClassVar[int]
    MAX_OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    LANGUAGES_FIELD_NUMBER: _ClassVar[int]
    context_window_tokens: int
    max_output_tokens: int
    languages: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, context_window_tokens: _Optional[int] = ..., max_output_tokens: _Optional[int] = ..., languages: _Optional[_Iterable[str]] = ...) -> None: ...

class ProviderRoute(_message.Message):
    __slots__ = ("adapter", "upstream_model", "mode_endpoints")
    ADAPTER_FIELD_NUMBER: _ClassVar[int]
    UPSTREAM_MODEL_FIELD_NUMBER: _ClassVar[int]
    MODE_ENDPOINTS_FIELD_NUMBER: _ClassVar[int]
    adapter: str
    upstream_model: str
    mode_endpoints: _containers.RepeatedCompositeFieldContainer[ModeEndpoint]
    def __init__(self, adapter: _Optional[str] = ..., upstream_model: _Optional[str] = ..., mode_endpoints: _Optional[_Iterable[_Union[ModeEndpoint, _Mapping]]] = ...) -> None: ...

class ModeEndpoint(_message.Message):
    __slots__ = ("capability", "endpoint")
    CAPABILITY_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    capability: Capability
    endpoint: str
    def __init__(self, capability: _Optional[_Union[Capability, str]] = ..., endpoint: _Optional[str] = ...) -> None: ...

class Model(_message.Message):
    __slots__ = ("id", "display_name", "provider", "modality", "tier", "description", "capabilities", "limits", "price", "route")
    ID_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    MODALITY_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    id: str
    display_name: str
    provider: str
    modality: Modality
    tier: Tier
    description: str
    capabilities: _containers.RepeatedScalarFieldContainer[Capability]
    limits: ModelLimits
    price: Price
    route: ProviderRoute
    def __init__(self, id: _Optional[str] = ..., display_name: _Optional[str] = ..., provider: _Optional[str] = ..., modality: _Optional[_Union[Modality, str]] = ..., tier: _Optional[_Union[Tier, str]] = ..., description: _Optional[str] = ..., capabilities: _Optional[_Iterable[_Union[Capability, str]]] = ..., limits: _Optional[_Union[ModelLimits, _Mapping]] = ..., price: _Optional[_Union[Price, _Mapping]] = ..., route: _Optional[_Union[ProviderRoute, _Mapping]] = ...) -> None: ...

class ModalityDefault(_message.Message):
    __slots__ = ("modality", "tier", "preferred_model_ids", "task_tiers")
    MODALITY_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    PREFERRED_MODEL_IDS_FIELD_NUMBER: _ClassVar[int]
    TASK_TIERS_FIELD_NUMBER: _ClassVar[int]
    modality: Modality
    tier: Tier
    preferred_model_ids: _containers.RepeatedScalarFieldContainer[str]
    task_tiers: _containers.RepeatedCompositeFieldContainer[TaskTier]
    def __init__(self, modality: _Optional[_Union[Modality, str]] = ..., tier: _Optional[_Union[Tier, str]] = ..., preferred_model_ids: _Optional[_Iterable[str]] = ..., task_tiers: _Optional[_Iterable[_Union[TaskTier, _Mapping]]] = ...) -> None: ...

class Plan(_message.Message):
    __slots__ = ("id", "display_name", "monthly_credits", "max_concurrent_requests", "defaults")
    ID_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    MONTHLY_CREDITS_FIELD_NUMBER: _ClassVar[int]
    MAX_CONCURRENT_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    DEFAULTS_FIELD_NUMBER: _ClassVar[int]
    id: str
    display_name: str
    monthly_credits: int
    max_concurrent_requests: int
    defaults: _containers.RepeatedCompositeFieldContainer[ModalityDefault]
    def __init__(self, id: _Optional[str] = ..., display_name: _Optional[str] = ..., monthly_credits: _Optional[int] = ..., max_concurrent_requests: _Optional[int] = ..., defaults: _Optional[_Iterable[_Union[ModalityDefault, _Mapping]]] = ...) -> None: ...

class Config(_message.Message):
    __slots__ = ("models", "plans", "default_plan_id", "tier_prices", "api_keys", "provider_keys_file")
    MODELS_FIELD_NUMBER: _ClassVar[int]
    PLANS_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_PLAN_ID_FIELD_NUMBER: _ClassVar[int]
    TIER_PRICES_FIELD_NUMBER: _ClassVar[int]
    API_KEYS_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_KEYS_FILE_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[Model]
    plans: _containers.RepeatedCompositeFieldContainer[Plan]
    default_plan_id: str
    tier_prices: _containers.RepeatedCompositeFieldContainer[TierPrice]
    api_keys: _containers.RepeatedCompositeFieldContainer[ApiKey]
    provider_keys_file: str
    def __init__(self, models: _Optional[_Iterable[_Union[Model, _Mapping]]] = ..., plans: _Optional[_Iterable[_Union[Plan, _Mapping]]] = ..., default_plan_id: _Optional[str] = ..., tier_prices: _Optional[_Iterable[_Union[TierPrice, _Mapping]]] = ..., api_keys: _Optional[_Iterable[_Union[ApiKey, _Mapping]]] = ..., provider_keys_file: _Optional[str] = ...) -> None: ...

class ApiKey(_message.Message):
    __slots__ = ("name", "sha256", "role")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    name: str
    sha256: str
    role: ApiKeyRole
    def __init__(self, name: _Optional[str] = ..., sha256: _Optional[str] = ..., role: _Optional[_Union[ApiKeyRole, str]] = ...) -> None: ...
