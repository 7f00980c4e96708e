"""Runs a decision: calls the chosen model's provider and falls back along the chain.

Rules:
- Automatic mode: when a model fails *before any output* with a retryable error, the next model
  of the chain is tried and a ``FallbackNotice`` says so. A non-retryable error ends the request.
- Once output has been sent there is no silent switch: the request ends with
  ``StreamInterruptedError``.
- Pinned mode: one attempt, never another model.
- Cancellation (the caller went away or its deadline passed) propagates into the provider call,
  which closes it; nothing keeps running for a caller that is gone.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass
from typing import Protocol, TypeAlias

from opentelemetry import context as otel_context
from opentelemetry import trace

from switchboard.errors import ExhaustedError, ProviderError, StreamInterruptedError, SwitchboardError
from switchboard.providers import ProviderRegistry
from switchboard.types import (
    Artifact,
    Citation,
    Decision,
    Finished,
    FinishReason,
    GenerationRequest,
    Model,
    ProviderEvent,
    ReasoningChunk,
    SelectionMode,
    TextChunk,
    ToolCallEvent,
    Usage,
)


@dataclass(frozen=True, slots=True)
class FallbackNotice:
    """A model failed before any output; the next one is tried."""

    from_model: Model
    to_model: Model
    reason: str
    message: str
    attempt: int


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a successful generation ended."""

    model: Model
    finish_reason: FinishReason
    usage: Usage
    attempts: int
    simulated: bool
    credits: int


GenerationEvent: TypeAlias = FallbackNotice | TextChunk | ReasoningChunk | Citation | Artifact | ToolCallEvent | Outcome


class AttemptObserver(Protocol):
    """Told how each provider call went (the circuit breaker and metrics listen here)."""

    def record_success(self, model_id: str) -> None:
        """The model's call finished."""
        ...

    def record_failure(self, model_id: str) -> None:
        """The model's call failed with a provider error."""
        ...


class AttemptGate(Protocol):
    """Asked before each attempt; raises ExhaustedError when the model cannot be paid for."""

    async def prepare(self, model: Model) -> None:
        """Get ready to call ``model`` (for example, grow the credit hold)."""
        ...


class _NoObserver:
    def record_success(self, model_id: str) -> None:
        return None

    def record_failure(self, model_id: str) -> None:
        return None


class ProviderFailedError(SwitchboardError):
    """Raised when the last model that could be tried failed before any output."""

    def __init__(self, error: ProviderError, model: Model, attempts: int) -> None:
        metadata = {"model_id": model.id, "attempts": str(attempts), "provider_reason": error.reason}
        super().__init__(
            "PROVIDER_FAILED" if error.retryable else error.reason,
            f"{model.id} failed: {error.message}",
            metadata,
        )
        self.code = error.code


def actual_credits(decision_model: Model, usage: Usage) -> int:
    """The credits a finished generation costs on ``decision_model`` given its usage."""
    return decision_model.price.cost(usage.input_tokens, usage.output_tokens)


class Generator:
    """Runs decisions against the providers of a registry."""

    def __init__(
        self,
        providers: ProviderRegistry,
        observer: AttemptObserver | None = None,
        pricing: Callable[[Model, Usage], int] = actual_credits,
        tracer: trace.Tracer | None = None,
    ) -> None:
        self.providers = providers
        self.observer: AttemptObserver = observer or _NoObserver()
        self.pricing = pricing
        self.tracer: trace.Tracer = tracer or trace.NoOpTracer()

    async def run(
        self, decision: Decision, request: GenerationRequest, gate: AttemptGate | None = None
    ) -> AsyncGenerator[GenerationEvent, None]:
        """Yield output events for ``request``, falling back along ``decision``'s chain."""
        chain = decision.chain if decision.mode is SelectionMode.AUTOMATIC else (decision.model,)
        for attempt, model in enumerate(chain, start=1):
            if gate is not None:
                try:
                    await gate.prepare(model)
                except ExhaustedError as exc:
                    if attempt == len(chain):
                        raise
                    yield FallbackNotice(model, chain[attempt], exc.reason, exc.message, attempt + 1)
                    continue
            provider = self.providers.for_model(model)
            emitted = False
            # One span per attempt, current while the provider is called (HTTP adapters pass its
            # trace context on); ended however the attempt ends.
            span = self.tracer.start_span(
                f"provider {model.id}",
                kind=trace.SpanKind.CLIENT,
                attributes={
                    "switchboard.model": model.id,
                    "switchboard.provider": model.provider,
                    "switchboard.adapter": provider.name,
                    "switchboard.attempt": attempt,
                    "switchboard.simulated": provider.simulated,
                },
            )
            stream = provider.stream(model, request)
            ended = False
            try:
                async for event in _within(span, stream) if span.is_recording() else stream:
                    if not emitted:
                        span.add_event("first_output")
                    if isinstance(event, Finished):
                        _check_usage(event.usage)
                        self.observer.record_success(model.id)
                        yield Outcome(
                            model=model,
                            finish_reason=event.finish_reason,
                            usage=event.usage,
                            attempts=attempt,
                            simulated=provider.simulated,
                            credits=self.pricing(model, event.usage),
                        )
                        return
                    emitted = True
                    yield event
            except ProviderError as exc:
                span.set_status(trace.Status(trace.StatusCode.ERROR, exc.reason))
                span.end()
                ended = True
                self.observer.record_failure(model.id)
                if emitted:
                    raise StreamInterruptedError(
                        "STREAM_INTERRUPTED",
                        f"{model.id} failed after output was sent ({exc.message}); no other model is tried",
                        {"model_id": model.id, "provider_reason": exc.reason, "attempts": str(attempt)},
                    ) from exc
                if not exc.retryable or attempt == len(chain):
                    raise ProviderFailedError(exc, model, attempt) from exc
                yield FallbackNotice(model, chain[attempt], exc.reason, exc.message, attempt + 1)
                continue
            finally:
                if not ended:
                    span.end()
            raise StreamInterruptedError(
                "STREAM_INTERRUPTED",
                f"{model.id} ended its stream without finishing",
                {"model_id": model.id, "attempts": str(attempt)},
            )


MAX_TOKENS = 2**40
"""The most tokens a provider may report for one call; more is a malformed response."""


def _check_usage(usage: Usage) -> None:
    """A provider's reported usage is a sane token count, or PROVIDER_BAD_RESPONSE (never priced)."""
    for tokens in (usage.input_tokens, usage.output_tokens):
        if not isinstance(tokens, int) or not 0 <= tokens <= MAX_TOKENS:
            raise ProviderError("PROVIDER_BAD_RESPONSE", f"the provider reported {tokens!r} tokens", retryable=True)


async def _within(span: trace.Span, stream: AsyncIterator[ProviderEvent]) -> AsyncIterator[ProviderEvent]:
    """``stream``'s events, with ``span`` the current span while the provider runs (so HTTP
    adapters send its trace context) but never across a yield: the context is restored in the
    same step, whichever task later resumes or closes the stream."""
    try:
        while True:
            token = otel_context.attach(trace.set_span_in_context(span))
            try:
                event = await anext(stream)
            except StopAsyncIteration:
                return
            finally:
                otel_context.detach(token)
            yield event
    finally:
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            await aclose()
