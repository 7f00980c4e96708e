"""The core's vocabulary: enums, value types and the Protocols adapters implement.

Nothing here imports grpc or protobuf. The enums carry the same numbers as their protobuf
counterparts in ``protos/switchboard/v1``, so converting is ``Tier(pb_value)``; a test keeps the
two in step.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, TypeAlias


class Modality(enum.IntEnum):
    """The kind of output a model produces."""

    TEXT = 1
    IMAGE = 2
    VIDEO = 3
    SPEECH = 4


class Tier(enum.IntEnum):
    """A model's tier; higher tiers cost more."""

    LITE = 1
    STANDARD = 2
    ADVANCED = 3


class Task(enum.IntEnum):
    """What a request is for; numbers match ``Task`` in catalog.proto."""

    FORMATTING = 1
    CLASSIFICATION = 2
    SUMMARY = 3
    CHAT = 4
    WRITING = 5
    REASONING = 6
    CODING = 7


class TierRule(enum.IntEnum):
    """Which rule chose an automatic decision's start tier; numbers match ``TierRule`` in router.proto."""

    PREFERRED_TIER = 1
    TASK = 2
    PLAN_DEFAULT = 3


class Capability(enum.IntEnum):
    """Something a request may need and a model may offer."""

    IMAGE_INPUT = 1
    DOCUMENT_INPUT = 2
    AUDIO_INPUT = 3
    VIDEO_INPUT = 4
    WEB_SEARCH = 5
    STRUCTURED_OUTPUT = 6
    TOOL_CALLING = 7
    REASONING = 8
    IMAGE_GENERATION = 9
    IMAGE_EDITING = 10
    TEXT_TO_VIDEO = 11
    IMAGE_TO_VIDEO = 12
    REFERENCE_IMAGES = 13
    NATIVE_AUDIO = 14
    MULTI_SHOT = 15
    VIDEO_EDITING = 16
    VIDEO_EXTENSION = 17
    VIDEO_REFERENCE = 18
    TEXT_TO_SPEECH = 19


class SelectionMode(enum.IntEnum):
    """Who chose the model."""

    AUTOMATIC = 1
    PINNED = 2


class NotChosenReason(enum.IntEnum):
    """Why a catalog model was not chosen; numbers match the protobuf enum."""

    RANKED_LOWER = 1
    NOT_PINNED = 2
    WRONG_MODALITY = 3
    MISSING_CAPABILITY = 4
    UNSUPPORTED_LANGUAGE = 5
    UNAVAILABLE = 6
    OVER_COST_CAP = 7
    CANNOT_AFFORD = 8


class Role(enum.IntEnum):
    """Who wrote a message of a conversation."""

    SYSTEM = 1
    USER = 2
    ASSISTANT = 3
    TOOL = 4


class FinishReason(enum.IntEnum):
    """Why a generation ended."""

    STOP = 1
    LENGTH = 2
    CONTENT_FILTER = 3
    TOOL_CALLS = 4


Capabilities: TypeAlias = frozenset[Capability]


@dataclass(frozen=True, slots=True)
class Price:
    """Credits for one request: a fixed part plus per-1,000-token rates."""

    per_request: int = 0
    per_1k_input_tokens: int = 0
    per_1k_output_tokens: int = 0

    def cost(self, input_tokens: int, output_tokens: int) -> int:
        """The credits a request with these token counts costs, rounding each rate up."""
        return (
            self.per_request
            + -(-input_tokens * self.per_1k_input_tokens // 1000)
            + -(-output_tokens * self.per_1k_output_tokens // 1000)
        )


@dataclass(frozen=True, slots=True)
class Model:
    """One catalog model, with the price in force resolved."""

    id: str
    display_name: str
    provider: str
    modality: Modality
    tier: Tier
    description: str
    capabilities: Capabilities
    price: Price
    adapter: str
    upstream_model: str
    context_window_tokens: int = 0
    max_output_tokens: int = 0
    languages: tuple[str, ...] = ()
    mode_endpoints: tuple[tuple[Capability, str], ...] = ()
    """The provider endpoint of each mode the route names (fal serves each mode at its own)."""

    def endpoint(self, mode: Capability) -> str:
        """The provider endpoint that serves ``mode``: the route's, else ``upstream_model``."""
        return next((e for c, e in self.mode_endpoints if c is mode), self.upstream_model)

    def speaks(self, language: str) -> bool:
        """Whether the model lists ``language`` or its primary subtag (``pt-BR`` -> ``pt``)."""
        lang = language.lower()
        primary = lang.split("-", 1)[0]
        return any(code.lower() in (lang, primary) for code in self.languages)


@dataclass(frozen=True, slots=True)
class ModalityDefault:
    """A plan's defaults for one modality."""

    tier: Tier
    preferred_model_ids: tuple[str, ...] = ()
    task_tiers: Mapping[Task, Tier] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Plan:
    """A subscription plan."""

    id: str
    display_name: str
    monthly_credits: int
    max_concurrent_requests: int
    defaults: Mapping[Modality, ModalityDefault] = field(default_factory=dict)

    def default_for(self, modality: Modality) -> ModalityDefault:
        """The plan's defaults for ``modality``; Lite with no preferences when it names none."""
        return self.defaults.get(modality, ModalityDefault(tier=Tier.LITE))


@dataclass(frozen=True, slots=True)
class Catalog:
    """The models and plans the server works with, as loaded from the config.

    Build it with ``Catalog.build``, which indexes the models by id.
    """

    models: tuple[Model, ...]
    plans: Mapping[str, Plan]
    default_plan_id: str
    by_id: Mapping[str, Model]

    @classmethod
    def build(cls, models: tuple[Model, ...], plans: Mapping[str, Plan], default_plan_id: str) -> Catalog:
        """A catalog of these models and plans."""
        return cls(models, plans, default_plan_id, {m.id: m for m in models})

    def model(self, model_id: str) -> Model | None:
        """The model with this id, or None."""
        return self.by_id.get(model_id)

    @property
    def default_plan(self) -> Plan:
        """The plan of accounts the server does not know."""
        return self.plans[self.default_plan_id]


@dataclass(frozen=True, slots=True)
class Requirements:
    """What a request needs from a model."""

    modality: Modality
    capabilities: Capabilities = frozenset()
    language: str = ""


@dataclass(frozen=True, slots=True)
class SelectionRequest:
    """Everything selection looks at in a request."""

    account_id: str
    requirements: Requirements
    pinned_model_id: str = ""
    preferred_tier: Tier | None = None
    max_credits: int | None = None
    task: Task | None = None
    input_tokens: int = 0
    output_tokens: int = 0


@dataclass(frozen=True, slots=True)
class AccountState:
    """What selection needs to know about an account: its plan and spendable balance.

    ``balance`` is None when credits are not tracked, and then nothing is unaffordable.
    """

    account_id: str
    plan: Plan
    balance: int | None = None


@dataclass(frozen=True, slots=True)
class NotChosen:
    """Why one catalog model was not chosen."""

    model_id: str
    reason: NotChosenReason
    missing: Capabilities = frozenset()
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of selection: a model, its fallbacks and why the others were not chosen."""

    model: Model
    mode: SelectionMode
    fallbacks: tuple[Model, ...]
    estimated_credits: int
    required: Capabilities
    start_tier: Tier
    not_chosen: tuple[NotChosen, ...]
    plan_id: str
    tier_rule: TierRule | None = None  # None for a pinned decision

    @property
    def chain(self) -> tuple[Model, ...]:
        """The chosen model followed by its fallbacks, in the order Generate tries them."""
        return (self.model, *self.fallbacks)


class HealthView(Protocol):
    """Tells selection whether a model is cooling down after repeated failures."""

    def is_available(self, model_id: str) -> bool:
        """Whether automatic selection may use the model now."""
        ...


class ModelHealth(HealthView, Protocol):
    """Model health as the server uses it: selection asks ``is_available``, the Generate flow
    reports each provider call, ListModels shows the cool-down left, and the health service
    follows ``on_change``. ``start`` begins any background work on the running event loop;
    ``close`` ends it."""

    on_change: Callable[[str, bool], None] | None
    """Told (model id, serving) when a cool-down starts and when a model succeeds again."""

    def record_success(self, model_id: str) -> None:
        """The model's call finished."""
        ...

    def record_failure(self, model_id: str) -> None:
        """The model's call failed with a provider error."""
        ...

    def cooldown_remaining_ms(self, model_id: str) -> int:
        """Milliseconds until the model is tried again; 0 when it is available."""
        ...

    def start(self) -> None:
        """Begin background work (if any) on the running event loop."""
        ...

    async def close(self) -> None:
        """End background work and release connections."""
        ...


@dataclass(frozen=True, slots=True)
class BreakerState:
    """One model's breaker as a shared store holds it: consecutive failures, and the
    milliseconds left of its cool-down when it was read (0: none running)."""

    failures: int
    remaining_ms: int = 0


class HealthStore(Protocol):
    """Where every process of a deployment keeps the breakers they share (Redis or the ledger's
    database). Failures and successes are written as they happen; the whole state is read
    periodically."""

    async def failure(self, model_id: str, threshold: int, cooldown_ms: int) -> None:
        """Count a failure; at ``threshold`` or more, start (or restart) a cool-down of ``cooldown_ms``."""
        ...

    async def success(self, model_id: str) -> None:
        """The model succeeded: forget its failures."""
        ...

    async def snapshot(self) -> dict[str, BreakerState]:
        """Every model with failures counted."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


class AlwaysAvailable:
    """A HealthView for which every model is available."""

    def is_available(self, model_id: str) -> bool:
        """Every model is available."""
        return True


# ----------------------------------------------------------------- generation


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file sent with a prompt or a message."""

    mime_type: str
    data: bytes = b""
    uri: str = ""
    name: str = ""


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One turn of a conversation."""

    role: Role
    content: str
    attachments: tuple[Attachment, ...] = ()


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A function the model may call."""

    name: str
    description: str = ""
    parameters_json_schema: str = ""


@dataclass(frozen=True, slots=True)
class GenerationOptions:
    """Options passed on to the provider."""

    web_search: bool = False
    json_schema: str = ""
    schema_name: str = ""
    tools: tuple[ToolSpec, ...] = ()
    reasoning: bool = False
    language: str = ""
    max_output_tokens: int = 0
    voice: str = ""


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """A validated Generate request: what selection needs plus the content for the provider."""

    request_id: str
    selection: SelectionRequest
    prompt: str = ""
    messages: tuple[ChatMessage, ...] = ()
    attachments: tuple[Attachment, ...] = ()
    options: GenerationOptions = GenerationOptions()


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens a generation used."""

    input_tokens: int = 0
    output_tokens: int = 0


@dataclass(frozen=True, slots=True)
class TextChunk:
    """The next piece of a text answer."""

    text: str


@dataclass(frozen=True, slots=True)
class Artifact:
    """A generated image, video or speech file."""

    mime_type: str
    data: bytes = b""
    uri: str = ""
    simulated: bool = False


@dataclass(frozen=True, slots=True)
class ToolCallEvent:
    """A call the model makes to one of the request's tools."""

    id: str
    name: str
    arguments_json: str


@dataclass(frozen=True, slots=True)
class ReasoningChunk:
    """The next piece of the model's reasoning, never part of the answer's text."""

    text: str


@dataclass(frozen=True, slots=True)
class Citation:
    """A web source supporting the answer; the span counts code points of the answer's text
    (0, 0 when the provider names none)."""

    url: str
    title: str = ""
    start_index: int = 0
    end_index: int = 0
    cited_text: str = ""


@dataclass(frozen=True, slots=True)
class Finished:
    """The provider's last event: why it stopped and what it used."""

    finish_reason: FinishReason
    usage: Usage


ProviderEvent: TypeAlias = TextChunk | ReasoningChunk | Citation | Artifact | ToolCallEvent | Finished


class Provider(Protocol):
    """Streams one model's answer. Raises ``ProviderError`` when the call fails."""

    @property
    def name(self) -> str:
        """The adapter's name, for logs."""
        ...

    @property
    def simulated(self) -> bool:
        """True for the built-in simulated provider."""
        ...

    def stream(self, model: Model, request: GenerationRequest) -> AsyncIterator[ProviderEvent]:
        """Call the provider; yield output events, ending with one ``Finished``."""
        ...

    def supports(self, model: Model) -> bool:
        """Whether this provider serves the model's modality (the registry simulates the rest)."""
        ...

    async def close(self) -> None:
        """Release the provider's connections; idempotent."""
        ...
