from switchboard_client.v1 import catalog_pb2 as _catalog_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ModelHealth(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODEL_HEALTH_UNSPECIFIED: _ClassVar[ModelHealth]
    MODEL_HEALTH_SERVING: _ClassVar[ModelHealth]
    MODEL_HEALTH_COOLING_DOWN: _ClassVar[ModelHealth]

class Role(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ROLE_UNSPECIFIED: _ClassVar[Role]
    ROLE_SYSTEM: _ClassVar[Role]
    ROLE_USER: _ClassVar[Role]
    ROLE_ASSISTANT: _ClassVar[Role]
    ROLE_TOOL: _ClassVar[Role]

class SelectionMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SELECTION_MODE_UNSPECIFIED: _ClassVar[SelectionMode]
    SELECTION_MODE_AUTOMATIC: _ClassVar[SelectionMode]
    SELECTION_MODE_PINNED: _ClassVar[SelectionMode]

class NotChosenReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NOT_CHOSEN_REASON_UNSPECIFIED: _ClassVar[NotChosenReason]
    NOT_CHOSEN_REASON_RANKED_LOWER: _ClassVar[NotChosenReason]
    NOT_CHOSEN_REASON_NOT_PINNED: _ClassVar[NotChosenReason]
    NOT_CHOSEN_REASON_WRONG_MODALITY: _ClassVar[NotChosenReason]
    NOT_CHOSEN_REASON_MISSING_CAPABILITY: _ClassVar[NotChosenReason]
    NOT_CHOSEN_REASON_UNSUPPORTED_LANGUAGE: _ClassVar[NotChosenReason]
    NOT_CHOSEN_REASON_UNAVAILABLE: _ClassVar[NotChosenReason]
    NOT_CHOSEN_REASON_OVER_COST_CAP: _ClassVar[NotChosenReason]
    NOT_CHOSEN_REASON_CANNOT_AFFORD: _ClassVar[NotChosenReason]

class TierRule(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TIER_RULE_UNSPECIFIED: _ClassVar[TierRule]
    TIER_RULE_PREFERRED_TIER: _ClassVar[TierRule]
    TIER_RULE_TASK: _ClassVar[TierRule]
    TIER_RULE_PLAN_DEFAULT: _ClassVar[TierRule]

class FinishReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FINISH_REASON_UNSPECIFIED: _ClassVar[FinishReason]
    FINISH_REASON_STOP: _ClassVar[FinishReason]
    FINISH_REASON_LENGTH: _ClassVar[FinishReason]
    FINISH_REASON_CONTENT_FILTER: _ClassVar[FinishReason]
    FINISH_REASON_TOOL_CALLS: _ClassVar[FinishReason]
MODEL_HEALTH_UNSPECIFIED: ModelHealth
MODEL_HEALTH_SERVING: ModelHealth
MODEL_HEALTH_COOLING_DOWN: ModelHealth
ROLE_UNSPECIFIED: Role
ROLE_SYSTEM: Role
ROLE_USER: Role
ROLE_ASSISTANT: Role
ROLE_TOOL: Role
SELECTION_MODE_UNSPECIFIED: SelectionMode
SELECTION_MODE_AUTOMATIC: SelectionMode
SELECTION_MODE_PINNED: SelectionMode
NOT_CHOSEN_REASON_UNSPECIFIED: NotChosenReason
NOT_CHOSEN_REASON_RANKED_LOWER: NotChosenReason
NOT_CHOSEN_REASON_NOT_PINNED: NotChosenReason
NOT_CHOSEN_REASON_WRONG_MODALITY: NotChosenReason
NOT_CHOSEN_REASON_MISSING_CAPABILITY: NotChosenReason
NOT_CHOSEN_REASON_UNSUPPORTED_LANGUAGE: NotChosenReason
NOT_CHOSEN_REASON_UNAVAILABLE: NotChosenReason
NOT_CHOSEN_REASON_OVER_COST_CAP: NotChosenReason
NOT_CHOSEN_REASON_CANNOT_AFFORD: NotChosenReason
TIER_RULE_UNSPECIFIED: TierRule
TIER_RULE_PREFERRED_TIER: TierRule
TIER_RULE_TASK: TierRule
TIER_RULE_PLAN_DEFAULT: TierRule
FINISH_REASON_UNSPECIFIED: FinishReason
FINISH_REASON_STOP: FinishReason
FINISH_REASON_LENGTH: FinishReason
FINISH_REASON_CONTENT_FILTER: FinishReason
FINISH_REASON_TOOL_CALLS: FinishReason

class ListModelsRequest(_message.Message):
    __slots__ = ("modality", "tier", "provider")
    MODALITY_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    modality: _catalog_pb2.Modality
    tier: _catalog_pb2.Tier
    provider: str
    def __init__(self, modality: _Optional[_Union[_catalog_pb2.Modality, str]] = ..., tier: _Optional[_Union[_catalog_pb2.Tier, str]] = ..., provider: _Optional[str] = ...) -> None: ...

class ModelListing(_message.Message):
    __slots__ = ("model", "health", "simulated", "cooldown_remaining_ms")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    SIMULATED_FIELD_NUMBER: _ClassVar[int]
    COOLDOWN_REMAINING_MS_FIELD_NUMBER: _ClassVar[int]
    model: _catalog_pb2.Model
    health: ModelHealth
    simulated: bool
    cooldown_remaining_ms: int
    def __init__(self, model: _Optional[_Union[_catalog_pb2.Model, _Mapping]] = ..., health: _Optional[_Union[ModelHealth, str]] = ..., simulated: _Optional[bool] = ..., cooldown_remaining_ms: _Optional[int] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelListing]
    def __init__(self, models: _Optional[_Iterable[_Union[ModelListing, _Mapping]]] = ...) -> None: ...

class Attachment(_message.Message):
    __slots__ = ("mime_type", "data", "uri", "name")
    MIME_TYPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    URI_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    mime_type: str
    data: bytes
    uri: str
    name: str
    def __init__(self, mime_type: _Optional[str] = ..., data: _Optional[bytes] = ..., uri: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class ChatMessage(_message.Message):
    __slots__ = ("role", "content", "attachments")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    ATTACHMENTS_FIELD_NUMBER: _ClassVar[int]
    role: Role
    content: str
    attachments: _containers.RepeatedCompositeFieldContainer[Attachment]
    def __init__(self, role: _Optional[_Union[Role, str]] = ..., content: _Optional[str] = ..., attachments: _Optional[_Iterable[_Union[Attachment, _Mapping]]] = ...) -> None: ...

class Conversation(_message.Message):
    __slots__ = ("messages",)
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[ChatMessage]
    def __init__(self, messages: _Optional[_Iterable[_Union[ChatMessage, _Mapping]]] = ...) -> None: ...

class StructuredOutput(_message.Message):
    __slots__ = ("json_schema", "name")
    JSON_SCHEMA_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    json_schema: str
    name: str
    def __init__(self, json_schema: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class Tool(_message.Message):
    __slots__ = ("name", "description", "parameters_json_schema")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_JSON_SCHEMA_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    parameters_json_schema: str
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., parameters_json_schema: _Optional[str] = ...) -> None: ...

class GenerationOptions(_message.Message):
    __slots__ = ("web_search", "structured_output", "tools", "reasoning", "language", "max_output_tokens", "voice")
    WEB_SEARCH_FIELD_NUMBER: _ClassVar[int]
    STRUCTURED_OUTPUT_FIELD_NUMBER: _ClassVar[int]
    TOOLS_FIELD_NUMBER: _ClassVar[int]
    REASONING_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    MAX_OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    VOICE_FIELD_NUMBER: _ClassVar[int]
    web_search: bool
    structured_output: StructuredOutput
    tools: _containers.RepeatedCompositeFieldContainer[Tool]
    reasoning: bool
    language: str
    max_output_tokens: int
    voice: str
    def __init__(self, web_search: _Optional[bool] = ..., structured_output: _Optional[_Union[StructuredOutput, _Mapping]] = ..., tools: _Optional[_Iterable[_Union[Tool, _Mapping]]] = ..., reasoning: _Optional[bool] = ..., language: _Optional[str] = ..., max_output_tokens: _Optional[int] = ..., voice: _Optional[str] = ...) -> None: ...

class GenerateRequest(_message.Message):
    __slots__ = ("account_id", "request_id", "modality", "required_capabilities", "prompt", "conversation", "attachments", "options", "pinned_model_id", "preferred_tier", "max_credits", "task")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    MODALITY_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    CONVERSATION_FIELD_NUMBER: _ClassVar[int]
    ATTACHMENTS_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    PINNED_MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    PREFERRED_TIER_FIELD_NUMBER: _ClassVar[int]
    MAX_CREDITS_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    request_id: str
    modality: _catalog_pb2.Modality
    required_capabilities: _containers.RepeatedScalarFieldContainer[_catalog_pb2.Capability]
    prompt: str
    conversation: Conversation
    attachments: _containers.RepeatedCompositeFieldContainer[Attachment]
    options: GenerationOptions
    pinned_model_id: str
    preferred_tier: _catalog_pb2.Tier
    max_credits: int
    task: _catalog_pb2.Task
    def __init__(self, account_id: _Optional[str] = ..., request_id: _Optional[str] = ..., modality: _Optional[_Union[_catalog_pb2.Modality, str]] = ..., required_capabilities: _Optional[_Iterable[_Union[_catalog_pb2.Capability, str]]] = ..., prompt: _Optional[str] = ..., conversation: _Optional[_Union[Conversation, _Mapping]] = ..., attachments: _Optional[_Iterable[_Union[Attachment, _Mapping]]] = ..., options: _Optional[_Union[GenerationOptions, _Mapping]] = ..., pinned_model_id: _Optional[str] = ..., preferred_tier: _Optional[_Union[_catalog_pb2.Tier, str]] = ..., max_credits: _Optional[int] = ..., task: _Optional[_Union[_catalog_pb2.Task, str]] = ...) -> None: ...

class SelectModelRequest(_message.Message):
    __slots__ = ("request",)
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    request: GenerateRequest
    def __init__(self, request: _Optional[_Union[GenerateRequest, _Mapping]] = ...) -> None: ...

class NotChosen(_message.Message):
    __slots__ = ("model_id", "reason", "missing_capabilities", "detail")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MISSING_CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    reason: NotChosenReason
    missing_capabilities: _containers.RepeatedScalarFieldContainer[_catalog_pb2.Capability]
    detail: str
    def __init__(self, model_id: _Optional[str] = ..., reason: _Optional[_Union[NotChosenReason, str]] = ..., missing_capabilities: _Optional[_Iterable[_Union[_catalog_pb2.Capability, str]]] = ..., detail: _Optional[str] = ...) -> None: ...

class Decision(_message.Message):
    __slots__ = ("model", "mode", "fallback_model_ids", "estimated_credits", "required_capabilities", "start_tier", "not_chosen", "simulated", "plan_id", "tier_rule")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_MODEL_IDS_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_CREDITS_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    START_TIER_FIELD_NUMBER: _ClassVar[int]
    NOT_CHOSEN_FIELD_NUMBER: _ClassVar[int]
    SIMULATED_FIELD_NUMBER: _ClassVar[int]
    PLAN_ID_FIELD_NUMBER: _ClassVar[int]
    TIER_RULE_FIELD_NUMBER: _ClassVar[int]
    model: _catalog_pb2.Model
    mode: SelectionMode
    fallback_model_ids: _containers.RepeatedScalarFieldContainer[str]
    estimated_credits: int
    required_capabilities: _containers.RepeatedScalarFieldContainer[_catalog_pb2.Capability]
    start_tier: _catalog_pb2.Tier
    not_chosen: _containers.RepeatedCompositeFieldContainer[NotChosen]
    simulated: bool
    plan_id: str
    tier_rule: TierRule
    def __init__(self, model: _Optional[_Union[_catalog_pb2.Model, _Mapping]] = ..., mode: _Optional[_Union[SelectionMode, str]] = ..., fallback_model_ids: _Optional[_Iterable[str]] = ..., estimated_credits: _Optional[int] = ..., required_capabilities: _Optional[_Iterable[_Union[_catalog_pb2.Capability, str]]] = ..., start_tier: _Optional[_Union[_catalog_pb2.Tier, str]] = ..., not_chosen: _Optional[_Iterable[_Union[NotChosen, _Mapping]]] = ..., simulated: _Optional[bool] = ..., plan_id: _Optional[str] = ..., tier_rule: _Optional[_Union[TierRule, str]] = ...) -> None: ...

class SelectModelResponse(_message.Message):
    __slots__ = ("decision",)
    DECISION_FIELD_NUMBER: _ClassVar[int]
    decision: Decision
    def __init__(self, decision: _Optional[_Union[Decision, _Mapping]] = ...) -> None: ...

class Fallback(_message.Message):
    __slots__ = ("from_model_id", "to_model_id", "reason", "message", "attempt")
    FROM_MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    TO_MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    from_model_id: str
    to_model_id: str
    reason: str
    message: str
    attempt: int
    def __init__(self, from_model_id: _Optional[str] = ..., to_model_id: _Optional[str] = ..., reason: _Optional[str] = ..., message: _Optional[str] = ..., attempt: _Optional[int] = ...) -> None: ...

class TextDelta(_message.Message):
    __slots__ = ("text",)
    TEXT_FIELD_NUMBER: _ClassVar[int]
    text: str
    def __init__(self, text: _Optional[str] = ...) -> None: ...

class ToolCall(_message.Message):
    __slots__ = ("id", "name", "arguments_json")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ARGUMENTS_JSON_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    arguments_json: str
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., arguments_json: _Optional[str] = ...) -> None: ...

class MediaArtifact(_message.Message):
    __slots__ = ("mime_type", "data", "uri", "simulated")
    MIME_TYPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    URI_FIELD_NUMBER: _ClassVar[int]
    SIMULATED_FIELD_NUMBER: _ClassVar[int]
    mime_type: str
    data: bytes
    uri: str
    simulated: bool
    def __init__(self, mime_type: _Optional[str] = ..., data: _Optional[bytes] = ..., uri: _Optional[str] = ..., simulated: _Optional[bool] = ...) -> None: ...

class ReasoningDelta(_message.Message):
    __slots__ = ("text",)
    TEXT_FIELD_NUMBER: _ClassVar[int]
    text: str
    def __init__(self, text: _Optional[str] = ...) -> None: ...

class Citation(_message.Message):
    __slots__ = ("url", "title", "start_index", "end_index", "cited_text")
    URL_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    START_INDEX_FIELD_NUMBER: _ClassVar[int]
    END_INDEX_FIELD_NUMBER: _ClassVar[int]
    CITED_TEXT_FIELD_NUMBER: _ClassVar[int]
    url: str
    title: str
    start_index: int
    end_index: int
    cited_text: str
    def __init__(self, url: _Optional[str] = ..., title: _Optional[str] = ..., start_index: _Optional[int] = ..., end_index: _Optional[int] = ..., cited_text: _Optional[str] = ...) -> None: ...

class Usage(_message.Message):
    __slots__ = ("input_tokens", "output_tokens")
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    input_tokens: int
    output_tokens: int
    def __init__(self, input_tokens: _Optional[int] = ..., output_tokens: _Optional[int] = ...) -> None: ...

class Completion(_message.Message):
    __slots__ = ("model_id", "finish_reason", "usage", "credits_charged", "balance_remaining", "attempts", "simulated", "request_id")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    FINISH_REASON_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    CREDITS_CHARGED_FIELD_NUMBER: _ClassVar[int]
    BALANCE_REMAINING_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    SIMULATED_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    finish_reason: FinishReason
    usage: Usage
    credits_charged: int
    balance_remaining: int
    attempts: int
    simulated: bool
    request_id: str
    def __init__(self, model_id: _Optional[str] = ..., finish_reason: _Optional[_Union[FinishReason, str]] = ..., usage: _Optional[_Union[Usage, _Mapping]] = ..., credits_charged: _Optional[int] = ..., balance_remaining: _Optional[int] = ..., attempts: _Optional[int] = ..., simulated: _Optional[bool] = ..., request_id: _Optional[str] = ...) -> None: ...

class GenerateResponse(_message.Message):
    __slots__ = ("decision", "fallback", "delta", "artifact", "tool_call", "completion", "reasoning", "citation")
    DECISION_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_FIELD_NUMBER: _ClassVar[int]
    TOOL_CALL_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_FIELD_NUMBER: _ClassVar[int]
    REASONING_FIELD_NUMBER: _ClassVar[int]
    CITATION_FIELD_NUMBER: _ClassVar[int]
    decision: Decision
    fallback: Fallback
    delta: TextDelta
    artifact: MediaArtifact
    tool_call: ToolCall
    completion: Completion
    reasoning: ReasoningDelta
    citation: Citation
    def __init__(self, decision: _Optional[_Union[Decision, _Mapping]] = ..., fallback: _Optional[_Union[Fallback, _Mapping]] = ..., delta: _Optional[_Union[TextDelta, _Mapping]] = ..., artifact: _Optional[_Union[MediaArtifact, _Mapping]] = ..., tool_call: _Optional[_Union[ToolCall, _Mapping]] = ..., completion: _Optional[_Union[Completion, _Mapping]] = ..., reasoning: _Optional[_Union[ReasoningDelta, _Mapping]] = ..., citation: _Optional[_Union[Citation, _Mapping]] = ...) -> None: ...
