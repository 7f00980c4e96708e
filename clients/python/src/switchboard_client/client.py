"""The typed convenience layer over the generated stubs."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import Any, TypeAlias

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from switchboard_client.v1 import accounts_pb2_grpc, catalog_pb2, router_pb2, router_pb2_grpc

Event: TypeAlias = (
    router_pb2.Decision
    | router_pb2.Fallback
    | router_pb2.TextDelta
    | router_pb2.ReasoningDelta
    | router_pb2.Citation
    | router_pb2.MediaArtifact
    | router_pb2.ToolCall
    | router_pb2.Completion
)
"""One frame of a Generate stream: the oneof's message."""


class SwitchboardError(Exception):
    """A call failed. ``reason`` and ``metadata`` come from the status's ErrorInfo (empty when the
    failure happened before Switchboard answered, e.g. a deadline or an unreachable server)."""

    def __init__(
        self, code: grpc.StatusCode, message: str, reason: str = "", metadata: Mapping[str, str] | None = None
    ):
        super().__init__(f"{code.name}: {reason + ': ' if reason else ''}{message}")
        self.code = code
        self.message = message
        self.reason = reason
        self.metadata = dict(metadata or {})

    @classmethod
    def from_rpc_error(cls, exc: grpc.aio.AioRpcError) -> SwitchboardError:
        """Decode the ErrorInfo carried in ``grpc-status-details-bin``."""
        reason, metadata = "", {}
        status = rpc_status.from_call(exc)  # type: ignore[arg-type]
        for detail in status.details if status is not None else []:
            info = error_details_pb2.ErrorInfo()
            if detail.Unpack(info):
                reason, metadata = info.reason, dict(info.metadata)
                break
        return cls(exc.code(), exc.details() or "", reason, metadata)


def _enum(enum: Any, prefix: str, value: str | int | None) -> int:
    if value is None or value == "":
        return 0
    if isinstance(value, int):
        return value
    return int(enum.Value(prefix + value.upper()))


def build_request(
    account_id: str,
    prompt: str | None = None,
    *,
    modality: str | int = "text",
    messages: Sequence[tuple[str, str]] = (),
    capabilities: Iterable[str | int] = (),
    attachments: Iterable[tuple[str, bytes | str]] = (),
    pinned_model_id: str = "",
    preferred_tier: str | int | None = None,
    max_credits: int | None = None,
    request_id: str = "",
    web_search: bool = False,
    json_schema: str = "",
    reasoning: bool = False,
    language: str = "",
    max_output_tokens: int = 0,
) -> router_pb2.GenerateRequest:
    """A GenerateRequest from plain Python values. ``messages`` are (role, text) pairs such as
    ("user", "Hi"); ``attachments`` are (MIME type, bytes or URI) pairs; enum values are given by
    their short names ("text", "web_search", "advanced")."""
    req = router_pb2.GenerateRequest(
        account_id=account_id,
        request_id=request_id,
        modality=_enum(catalog_pb2.Modality, "MODALITY_", modality),
        required_capabilities=[_enum(catalog_pb2.Capability, "CAPABILITY_", c) for c in capabilities],
        pinned_model_id=pinned_model_id,
        preferred_tier=_enum(catalog_pb2.Tier, "TIER_", preferred_tier),
    )
    if messages:
        for role, text in messages:
            req.conversation.messages.add(role=_enum(router_pb2.Role, "ROLE_", role), content=text)
    elif prompt is not None:
        req.prompt = prompt
    for mime, content in attachments:
        a = req.attachments.add(mime_type=mime)
        if isinstance(content, bytes):
            a.data = content
        else:
            a.uri = content
    o = req.options
    o.web_search, o.reasoning, o.language, o.max_output_tokens = web_search, reasoning, language, max_output_tokens
    if json_schema:
        o.structured_output.json_schema = json_schema
    if max_credits is not None:
        req.max_credits = max_credits
    return req


class SwitchboardClient:
    """An asyncio client. Use it as an async context manager, or call ``close()``."""

    def __init__(
        self,
        target: str,
        *,
        credentials: grpc.ChannelCredentials | None = None,
        api_key: str = "",
        timeout: float = 60.0,
    ) -> None:
        self._channel = (
            grpc.aio.secure_channel(target, credentials) if credentials else grpc.aio.insecure_channel(target)
        )
        self._router = router_pb2_grpc.RouterServiceStub(self._channel)
        self.accounts = accounts_pb2_grpc.AccountServiceStub(self._channel)
        """The generated AccountService stub, for the platform's admin side."""
        self._metadata = (("authorization", f"Bearer {api_key}"),) if api_key else ()
        self.timeout = timeout

    async def __aenter__(self) -> SwitchboardClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the channel."""
        await self._channel.close()

    async def list_models(
        self, *, modality: str | int | None = None, tier: str | int | None = None, provider: str = ""
    ) -> list[router_pb2.ModelListing]:
        """The catalog, filtered."""
        req = router_pb2.ListModelsRequest(
            modality=_enum(catalog_pb2.Modality, "MODALITY_", modality),
            tier=_enum(catalog_pb2.Tier, "TIER_", tier),
            provider=provider,
        )
        try:
            resp = await self._router.ListModels(req, timeout=self.timeout, metadata=self._metadata)
        except grpc.aio.AioRpcError as exc:
            raise SwitchboardError.from_rpc_error(exc) from None
        return list(resp.models)

    async def select_model(
        self, request: router_pb2.GenerateRequest | None = None, **fields: Any
    ) -> router_pb2.Decision:
        """The decision Generate would make for ``request`` (or ``build_request(**fields)``)."""
        req = request if request is not None else build_request(**fields)
        try:
            resp = await self._router.SelectModel(
                router_pb2.SelectModelRequest(request=req), timeout=self.timeout, metadata=self._metadata
            )
        except grpc.aio.AioRpcError as exc:
            raise SwitchboardError.from_rpc_error(exc) from None
        return resp.decision

    async def generate(
        self,
        request: router_pb2.GenerateRequest | None = None,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - the gRPC deadline sent with the call
        **fields: Any,
    ) -> AsyncIterator[Event]:
        """Stream a generation: yields the decision, fallback notices, deltas, reasoning deltas,
        citations, artifacts, tool calls and the completion. Breaking out of the loop cancels the call on the server."""
        req = request if request is not None else build_request(**fields)
        call = self._router.Generate(req, timeout=timeout or self.timeout, metadata=self._metadata)
        try:
            async for frame in call:
                kind = frame.WhichOneof("event")
                if kind is not None:
                    yield getattr(frame, kind)
        except grpc.aio.AioRpcError as exc:
            raise SwitchboardError.from_rpc_error(exc) from None
        finally:
            call.cancel()
