"""The RouterService servicer: converts messages, calls the core, converts back. Nothing else."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import structlog

from switchboard import convert
from switchboard.app import App
from switchboard.errors import InvalidRequestError
from switchboard.generation import FallbackNotice, Outcome
from switchboard.types import Artifact, Decision, GenerationRequest, Modality, TextChunk, Tier, ToolCallEvent
from switchboard.v1 import router_pb2, router_pb2_grpc

log = structlog.get_logger("switchboard")
_bind = structlog.contextvars.bind_contextvars


class RouterService(router_pb2_grpc.RouterServiceServicer):
    """ListModels, SelectModel and Generate over one App."""

    def __init__(self, app: App) -> None:
        self.app = app

    async def ListModels(
        self, request: router_pb2.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> router_pb2.ListModelsResponse:
        """The catalog, filtered, with each model's serving state."""
        modality = convert.enum_value(Modality, request.modality, "modality", required=False)
        tier = convert.enum_value(Tier, request.tier, "tier", required=False)
        provider = request.provider.strip().lower()
        app = self.app
        listings = []
        for model in app.catalog.models:
            if modality and model.modality is not modality:
                continue
            if tier and model.tier is not tier:
                continue
            if provider and model.provider.lower() != provider:
                continue
            available = app.health.is_available(model.id)
            listings.append(
                router_pb2.ModelListing(
                    model=app.messages.model(model.id),
                    health=router_pb2.MODEL_HEALTH_SERVING if available else router_pb2.MODEL_HEALTH_COOLING_DOWN,
                    simulated=app.providers.is_simulated(model.id),
                )
            )
        return router_pb2.ListModelsResponse(models=listings)

    async def SelectModel(
        self, request: router_pb2.SelectModelRequest, context: grpc.aio.ServicerContext
    ) -> router_pb2.SelectModelResponse:
        """The decision Generate would make; no side effects."""
        if not request.HasField("request"):
            raise InvalidRequestError("FIELD_REQUIRED", "request is required", {"field": "request"})
        gen = convert.generation_request(
            request.request, self.app.settings.limits, need_content=False, field="request."
        )
        decision = await self._decide(gen)
        simulated = self.app.providers.is_simulated(decision.model.id)
        return router_pb2.SelectModelResponse(decision=self.app.messages.decision(decision, simulated))

    async def Generate(
        self, request: router_pb2.GenerateRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[router_pb2.GenerateResponse]:
        """Select, call the provider, stream: decision, fallbacks, output, completion."""
        app = self.app
        gen = convert.generation_request(request, app.settings.limits, need_content=True)
        decision = await self._decide(gen)
        yield router_pb2.GenerateResponse(
            decision=app.messages.decision(decision, app.providers.is_simulated(decision.model.id))
        )
        async for event in app.generator.run(decision, gen):
            if isinstance(event, TextChunk):
                yield router_pb2.GenerateResponse(delta=router_pb2.TextDelta(text=event.text))
            elif isinstance(event, FallbackNotice):
                log.warning(
                    "fallback",
                    **structlog.contextvars.get_contextvars(),
                    from_model=event.from_model.id,
                    to_model=event.to_model.id,
                    reason=event.reason,
                    attempt=event.attempt,
                )
                _bind(model=event.to_model.id, attempts=event.attempt)
                yield router_pb2.GenerateResponse(
                    fallback=router_pb2.Fallback(
                        from_model_id=event.from_model.id,
                        to_model_id=event.to_model.id,
                        reason=event.reason,
                        message=event.message,
                        attempt=event.attempt,
                    )
                )
            elif isinstance(event, Artifact):
                yield router_pb2.GenerateResponse(artifact=convert.artifact_pb(event))
            elif isinstance(event, ToolCallEvent):
                yield router_pb2.GenerateResponse(tool_call=convert.tool_call_pb(event))
            elif isinstance(event, Outcome):
                _bind(model=event.model.id, attempts=event.attempts, credits=event.credits)
                yield router_pb2.GenerateResponse(completion=_completion(event, gen))

    async def _decide(self, gen: GenerationRequest) -> Decision:
        _bind(request_id=gen.request_id, account=gen.selection.account_id)
        account = await self.app.accounts.state(gen.selection.account_id)
        decision = self.app.selector.select(gen.selection, account, self.app.health)
        _bind(model=decision.model.id, mode=decision.mode.name.lower(), attempts=1)
        return decision


def _completion(outcome: Outcome, gen: GenerationRequest) -> router_pb2.Completion:
    return router_pb2.Completion(
        model_id=outcome.model.id,
        finish_reason=int(outcome.finish_reason),
        usage=router_pb2.Usage(input_tokens=outcome.usage.input_tokens, output_tokens=outcome.usage.output_tokens),
        credits_charged=outcome.credits,
        attempts=outcome.attempts,
        simulated=outcome.simulated,
        request_id=gen.request_id,
    )
