"""Converts protobuf messages to the core's types and back, validating what comes off the wire.

Validation failures raise ``InvalidRequestError`` with a precise reason and the field's path in
the metadata; nothing here knows about gRPC status codes.
"""

from __future__ import annotations

import itertools
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from google.protobuf import timestamp_pb2

from switchboard.errors import InvalidRequestError
from switchboard.generation import Outcome
from switchboard.ledger import MAX_CREDITS
from switchboard.selection import derive_requirements
from switchboard.types import (
    Artifact,
    Attachment,
    Capability,
    ChatMessage,
    Citation,
    Decision,
    GenerationOptions,
    GenerationRequest,
    Modality,
    Model,
    NotChosen,
    ReasoningChunk,
    Role,
    SelectionRequest,
    Task,
    Tier,
    ToolCallEvent,
    ToolSpec,
)
from switchboard.usage import GroupBy, UsageQuery, UsageReport, UsageTotals, day_text
from switchboard.v1 import accounts_pb2, catalog_pb2, router_pb2

_E = TypeVar("_E", Modality, Tier, Capability, Role, GroupBy, Task)
_LANGUAGE = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
_MAX_ID = 256
_NO_OPTIONS = GenerationOptions()  # a request without options (frozen, so one instance serves all)
_ID_PREFIX = os.urandom(8).hex()
_ID_COUNTER = itertools.count(1)


def new_request_id() -> str:
    """A request id unique across processes and restarts: 16 random hex digits drawn once per
    process, then a counter (24 hex digits in all). No system call per id."""
    return f"{_ID_PREFIX}{next(_ID_COUNTER):08x}"


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on what one request may carry."""

    max_prompt_chars: int = 4_000_000
    max_messages: int = 2_000
    max_attachments: int = 64
    max_tools: int = 128
    max_attachment_bytes: int = 16 * 1024 * 1024


def _required(field: str, what: str = "is required") -> InvalidRequestError:
    return InvalidRequestError("FIELD_REQUIRED", f"{field} {what}", {"field": field})


def _invalid(field: str, problem: str) -> InvalidRequestError:
    return InvalidRequestError("INVALID_FIELD", f"{field}: {problem}", {"field": field})


def credits(value: int, field: str, *, minimum: int) -> int:
    """A money field within ``minimum``..``MAX_CREDITS`` (10^12), or INVALID_FIELD naming it."""
    if not minimum <= value <= MAX_CREDITS:
        raise _invalid(field, f"must be between {minimum} and {MAX_CREDITS}")
    return value


def enum_value(cls: type[_E], value: int, field: str, *, required: bool) -> _E | None:
    if value == 0:
        if required:
            raise _required(field)
        return None
    member: _E | None = cls._value2member_map_.get(value)  # type: ignore[assignment]
    if member is None:
        raise InvalidRequestError(
            "INVALID_ENUM_VALUE", f"{field}: {value} is not a known value", {"field": field, "value": str(value)}
        )
    return member


def _identifier(value: str, field: str) -> str:
    if len(value) > _MAX_ID:
        raise _invalid(field, f"longer than {_MAX_ID} characters")
    return value


def _attachments(
    items: Iterable[router_pb2.Attachment], field: str, need_content: bool, limits: Limits
) -> list[Attachment]:
    out = []
    for i, a in enumerate(items):
        where = f"{field}[{i}]"
        if not a.mime_type:
            raise _required(f"{where}.mime_type")
        if len(a.data) > limits.max_attachment_bytes:
            raise InvalidRequestError(
                "ATTACHMENT_TOO_LARGE",
                f"{where}.data has {len(a.data)} bytes; the limit is {limits.max_attachment_bytes}",
                {"field": f"{where}.data", "bytes": str(len(a.data)), "limit": str(limits.max_attachment_bytes)},
            )
        source = a.WhichOneof("source")
        if need_content and source is None:
            raise _required(f"{where}.data", "or uri is required by Generate")
        out.append(Attachment(mime_type=a.mime_type, data=a.data, uri=a.uri, name=a.name))
    return out


def generation_request(
    pb: router_pb2.GenerateRequest, limits: Limits, *, need_content: bool, field: str = ""
) -> GenerationRequest:
    """Validate ``pb`` and convert it; ``need_content`` is True for Generate (attachments need
    data or a URI), False for SelectModel (a MIME type is enough)."""
    f = field
    account = pb.account_id.strip()
    if not account:
        raise _required(f"{f}account_id")
    _identifier(account, f"{f}account_id")
    request_id = _identifier(pb.request_id, f"{f}request_id") or new_request_id()
    modality = enum_value(Modality, pb.modality, f"{f}modality", required=True)
    assert modality is not None
    caps: list[Capability] = []
    for c in pb.required_capabilities:
        cap = enum_value(Capability, c, f"{f}required_capabilities", required=True)
        assert cap is not None
        caps.append(cap)
    tier = enum_value(Tier, pb.preferred_tier, f"{f}preferred_tier", required=False)
    task = enum_value(Task, pb.task, f"{f}task", required=False)

    content = pb.WhichOneof("content")
    attachments = _attachments(pb.attachments, f"{f}attachments", need_content, limits)
    messages: list[ChatMessage] = []
    if content is None:
        raise InvalidRequestError("EMPTY_PROMPT", f"{f}prompt or {f}conversation is required", {"field": f"{f}prompt"})
    if content == "prompt":
        if not pb.prompt.strip():
            raise InvalidRequestError("EMPTY_PROMPT", f"{f}prompt is empty", {"field": f"{f}prompt"})
        size = len(pb.prompt)
    else:
        if not pb.conversation.messages:
            raise InvalidRequestError(
                "EMPTY_PROMPT", f"{f}conversation has no messages", {"field": f"{f}conversation.messages"}
            )
        if len(pb.conversation.messages) > limits.max_messages:
            raise _invalid(f"{f}conversation.messages", f"more than {limits.max_messages} messages")
        size = 0
        for i, m in enumerate(pb.conversation.messages):
            where = f"{f}conversation.messages[{i}]"
            role = enum_value(Role, m.role, f"{where}.role", required=True)
            assert role is not None
            msg_attachments = _attachments(m.attachments, f"{where}.attachments", need_content, limits)
            if not m.content.strip() and not msg_attachments:
                raise InvalidRequestError("EMPTY_PROMPT", f"{where} has no content", {"field": f"{where}.content"})
            size += len(m.content)
            messages.append(ChatMessage(role=role, content=m.content, attachments=tuple(msg_attachments)))
        if all(m.role is Role.SYSTEM for m in messages):
            raise InvalidRequestError(
                "EMPTY_PROMPT", f"{f}conversation has only system messages", {"field": f"{f}conversation.messages"}
            )
    if size > limits.max_prompt_chars:
        raise InvalidRequestError(
            "PROMPT_TOO_LARGE",
            f"the prompt has {size} characters; the limit is {limits.max_prompt_chars}",
            {"characters": str(size), "limit": str(limits.max_prompt_chars)},
        )
    all_attachments = attachments + [a for m in messages for a in m.attachments]
    if len(all_attachments) > limits.max_attachments:
        raise _invalid(f"{f}attachments", f"more than {limits.max_attachments} attachments")

    options = _options(pb.options, limits, f"{f}options") if pb.HasField("options") else _NO_OPTIONS
    if pb.HasField("max_credits"):
        credits(pb.max_credits, f"{f}max_credits", minimum=0)
    requirements = derive_requirements(
        modality,
        caps,
        (a.mime_type for a in all_attachments),
        web_search=options.web_search,
        structured_output=bool(options.json_schema),
        tools=bool(options.tools),
        reasoning=options.reasoning,
        language=options.language,
    )
    selection = SelectionRequest(
        account_id=account,
        requirements=requirements,
        pinned_model_id=_identifier(pb.pinned_model_id.strip(), f"{f}pinned_model_id"),
        preferred_tier=tier,
        max_credits=pb.max_credits if pb.HasField("max_credits") else None,
        task=task,
        input_tokens=-(-size // 4),
        output_tokens=options.max_output_tokens,
    )
    return GenerationRequest(
        request_id=request_id,
        selection=selection,
        prompt=pb.prompt,
        messages=tuple(messages),
        attachments=tuple(attachments),
        options=options,
    )


MAX_JSON_DEPTH = 64
"""How deeply a caller's JSON (a schema) may nest; deeper is INVALID_FIELD, before any parsing."""


def json_depth(text: str) -> int:
    """How deeply ``text``'s arrays and objects nest (brackets inside strings do not count).
    Linear, with no recursion, so any input is safe to measure."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def _json(text: str, field: str) -> object:
    """Parse a caller's JSON, bounded in depth; INVALID_FIELD naming ``field`` when it does not parse."""
    if json_depth(text) > MAX_JSON_DEPTH:
        raise _invalid(field, f"nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise _invalid(field, f"not valid JSON ({getattr(exc, 'msg', 'too deep')})") from None


def _options(pb: router_pb2.GenerationOptions, limits: Limits, field: str) -> GenerationOptions:
    schema = ""
    if pb.HasField("structured_output"):
        schema = pb.structured_output.json_schema
        where = f"{field}.structured_output.json_schema"
        if not schema.strip():
            raise _required(where)
        parsed = _json(schema, where)
        if not isinstance(parsed, dict):
            raise _invalid(where, "must be a JSON object")
    if len(pb.tools) > limits.max_tools:
        raise _invalid(f"{field}.tools", f"more than {limits.max_tools} tools")
    tools = []
    names: set[str] = set()
    for i, t in enumerate(pb.tools):
        where = f"{field}.tools[{i}]"
        if not t.name.strip():
            raise _required(f"{where}.name")
        if t.name in names:
            raise _invalid(f"{where}.name", f"duplicate tool name {t.name!r}")
        names.add(t.name)
        if t.parameters_json_schema:
            _json(t.parameters_json_schema, f"{where}.parameters_json_schema")
        tools.append(ToolSpec(t.name, t.description, t.parameters_json_schema))
    if pb.language and not _LANGUAGE.match(pb.language):
        raise _invalid(f"{field}.language", f"{pb.language[:50]!r} is not a BCP-47 language code")
    if pb.max_output_tokens < 0:
        raise _invalid(f"{field}.max_output_tokens", "cannot be negative")
    return GenerationOptions(
        web_search=pb.web_search,
        json_schema=schema,
        schema_name=pb.structured_output.name,
        tools=tuple(tools),
        reasoning=pb.reasoning,
        language=pb.language,
        max_output_tokens=pb.max_output_tokens,
        voice=pb.voice,
    )


# ------------------------------------------------------------------ to protobuf


def model_pb(model: Model) -> catalog_pb2.Model:
    """The catalog message for ``model``, with its price in force."""
    return catalog_pb2.Model(
        id=model.id,
        display_name=model.display_name,
        provider=model.provider,
        modality=int(model.modality),
        tier=int(model.tier),
        description=model.description,
        capabilities=sorted(int(c) for c in model.capabilities),
        limits=catalog_pb2.ModelLimits(
            context_window_tokens=model.context_window_tokens,
            max_output_tokens=model.max_output_tokens,
            languages=list(model.languages),
        ),
        price=catalog_pb2.Price(
            credits_per_request=model.price.per_request,
            credits_per_1k_input_tokens=model.price.per_1k_input_tokens,
            credits_per_1k_output_tokens=model.price.per_1k_output_tokens,
        ),
        route=catalog_pb2.ProviderRoute(
            adapter=model.adapter,
            upstream_model=model.upstream_model,
            mode_endpoints=[catalog_pb2.ModeEndpoint(capability=c, endpoint=e) for c, e in model.mode_endpoints],
        ),
    )


class Messages:
    """Protobuf messages built once per catalog and reused on every response."""

    def __init__(self, models: Iterable[Model]) -> None:
        self._models = {m.id: model_pb(m) for m in models}
        self._not_chosen: dict[NotChosen, router_pb2.NotChosen] = {}
        self._responses: dict[tuple[int, bool], tuple[Decision, router_pb2.SelectModelResponse]] = {}

    def model(self, model_id: str) -> catalog_pb2.Model:
        """The catalog message of a model."""
        return self._models[model_id]

    def not_chosen(self, item: NotChosen) -> router_pb2.NotChosen:
        """The message for one not-chosen entry (cached: entries repeat across requests)."""
        found = self._not_chosen.get(item)
        if found is None:
            found = router_pb2.NotChosen(
                model_id=item.model_id,
                reason=int(item.reason),
                missing_capabilities=sorted(int(c) for c in item.missing),
                detail=item.detail,
            )
            if len(self._not_chosen) < 100_000:
                self._not_chosen[item] = found
        return found

    def select_response(self, decision: Decision, simulated: bool) -> router_pb2.SelectModelResponse:
        """The SelectModel response for ``decision``. The selector returns the same Decision
        object for the same inputs, so the response is built once per decision and reused (it is
        only ever serialized, never changed)."""
        key = (id(decision), simulated)
        found = self._responses.get(key)
        if found is not None and found[0] is decision:
            return found[1]
        response = router_pb2.SelectModelResponse(decision=self.decision(decision, simulated))
        if len(self._responses) >= 4096:
            self._responses.clear()
        self._responses[key] = (decision, response)
        return response

    def decision(self, decision: Decision, simulated: bool) -> router_pb2.Decision:
        """The message for ``decision``."""
        return router_pb2.Decision(
            model=self._models[decision.model.id],
            mode=int(decision.mode),
            fallback_model_ids=[m.id for m in decision.fallbacks],
            estimated_credits=decision.estimated_credits,
            required_capabilities=sorted(int(c) for c in decision.required),
            start_tier=int(decision.start_tier),
            not_chosen=[self.not_chosen(n) for n in decision.not_chosen],
            simulated=simulated,
            plan_id=decision.plan_id,
            tier_rule=int(decision.tier_rule or 0),
        )


def completion_pb(outcome: Outcome, request_id: str, credits_charged: int) -> router_pb2.GenerateResponse:
    """The completion frame of a finished generation (``balance_remaining`` is set after the charge)."""
    usage = outcome.usage
    return router_pb2.GenerateResponse(
        completion=router_pb2.Completion(
            model_id=outcome.model.id,
            finish_reason=int(outcome.finish_reason),
            usage=router_pb2.Usage(input_tokens=usage.input_tokens, output_tokens=usage.output_tokens),
            credits_charged=credits_charged,
            attempts=outcome.attempts,
            simulated=outcome.simulated,
            request_id=request_id,
        )
    )


def artifact_pb(artifact: Artifact) -> router_pb2.MediaArtifact:
    """The message for a generated file."""
    if artifact.uri:
        return router_pb2.MediaArtifact(mime_type=artifact.mime_type, uri=artifact.uri, simulated=artifact.simulated)
    return router_pb2.MediaArtifact(mime_type=artifact.mime_type, data=artifact.data, simulated=artifact.simulated)


def tool_call_pb(call: ToolCallEvent) -> router_pb2.ToolCall:
    """The message for a tool call."""
    return router_pb2.ToolCall(id=call.id, name=call.name, arguments_json=call.arguments_json)


def reasoning_pb(chunk: ReasoningChunk) -> router_pb2.GenerateResponse:
    """The frame for a piece of the model's reasoning (never a TextDelta)."""
    return router_pb2.GenerateResponse(reasoning=router_pb2.ReasoningDelta(text=chunk.text))


def citation_pb(citation: Citation) -> router_pb2.GenerateResponse:
    """The frame for a web source supporting the answer."""
    return router_pb2.GenerateResponse(
        citation=router_pb2.Citation(
            url=citation.url,
            title=citation.title,
            start_index=citation.start_index,
            end_index=citation.end_index,
            cited_text=citation.cited_text,
        )
    )


def usage_query(request: Any) -> UsageQuery:
    """A GetUsageRequest as the usage core's query (INVALID_ENUM_VALUE for an unknown grouping)."""

    def ms(field: str) -> int | None:
        if not request.HasField(field):
            return None
        ts = getattr(request, field)
        return int(ts.seconds) * 1000 + int(ts.nanos) // 1_000_000

    group_by = enum_value(GroupBy, int(request.group_by), "group_by", required=False) or GroupBy.MODEL
    return UsageQuery(
        account_id=request.account_id.strip(),
        model_id=request.model_id.strip(),
        start_ms=ms("start_time"),
        end_ms=ms("end_time"),
        group_by=group_by,
        page_size=int(request.page_size),
        page_token=request.page_token,
    )


def _ms_timestamp(ms: int) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=ms // 1000, nanos=(ms % 1000) * 1_000_000)


def _usage_group(totals: UsageTotals, group_by: GroupBy | None) -> accounts_pb2.UsageGroup:
    group = accounts_pb2.UsageGroup(
        requests=totals.requests,
        credits=totals.credits,
        input_tokens=totals.input_tokens,
        output_tokens=totals.output_tokens,
    )
    key = totals.key
    if group_by is GroupBy.MODEL:
        group.model_id = str(key)
    elif group_by is GroupBy.ACCOUNT:
        group.account_id = str(key)
    elif group_by is GroupBy.MODALITY:
        group.modality = int(key or 0)
    elif group_by is GroupBy.TIER:
        group.tier = int(key or 0)
    elif group_by is GroupBy.DAY:
        group.day = day_text(int(key or 0))
    return group


def usage_response(report: UsageReport) -> accounts_pb2.GetUsageResponse:
    """A usage report as a GetUsageResponse."""
    return accounts_pb2.GetUsageResponse(
        start_time=_ms_timestamp(report.start_ms),
        end_time=_ms_timestamp(report.end_ms),
        groups=[_usage_group(g, report.group_by) for g in report.groups],
        next_page_token=report.next_page_token,
        total=_usage_group(report.total, None),
        top_up_credits=report.top_ups,
        allowance_granted_credits=report.allowance_granted,
        allowance_expired_credits=report.allowance_expired,
    )
