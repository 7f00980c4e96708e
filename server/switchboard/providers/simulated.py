"""The built-in simulated provider: deterministic output, real streaming, injectable failures.

It serves any model whose provider has no credentials configured (when the settings allow it),
and the test and load-test suites. The text is derived from the prompt and the model id, so the
same request always streams the same tokens. Everything it produces is labelled simulated.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import math
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass

from switchboard.errors import ProviderError
from switchboard.providers import placeholder
from switchboard.types import (
    Artifact,
    Citation,
    Finished,
    FinishReason,
    GenerationRequest,
    Modality,
    Model,
    ProviderEvent,
    ReasoningChunk,
    TextChunk,
    ToolCallEvent,
    Usage,
)

_WORDS = [
    "route",
    "request",
    "model",
    "credit",
    "stream",
    "token",
    "tier",
    "fallback",
    "latency",
    "plan",
    "answer",
    "signal",
    "balance",
    "switch",
    "channel",
    "quota",
    "prompt",
    "context",
    "vector",
    "cache",
    "shard",
    "replica",
    "window",
    "budget",
    "policy",
]


@dataclass(frozen=True, slots=True)
class SimulationProfile:
    """How the simulated provider behaves.

    ``fail_before_first`` and ``fail_mid_stream`` name model ids (or ``*`` for every model) whose
    calls fail before the first token, or after ``fail_after_tokens`` tokens.
    """

    time_to_first_token_s: float = 0.0
    inter_token_s: float = 0.0
    tokens: int = 24
    fail_before_first: frozenset[str] = frozenset()
    fail_mid_stream: frozenset[str] = frozenset()
    fail_after_tokens: int = 3


def estimate_tokens(text: str) -> int:
    """A rough token count: one token per four characters, at least one for non-empty text."""
    return max(1, math.ceil(len(text) / 4)) if text else 0


def request_text(request: GenerationRequest) -> str:
    """The prompt, or the conversation's messages joined, as one text."""
    if request.messages:
        return "\n".join(m.content for m in request.messages)
    return request.prompt


def _matches(model_id: str, ids: frozenset[str]) -> bool:
    return model_id in ids or "*" in ids


class SimulatedProvider:
    """A provider that streams deterministic output with configurable delays and failures."""

    def __init__(self, profile: SimulationProfile | None = None) -> None:
        self.profile = profile or SimulationProfile()
        self.active_streams = 0
        self.cancelled_streams = 0
        self.completed_streams = 0

    @property
    def name(self) -> str:
        """The adapter's name."""
        return "simulated"

    @property
    def simulated(self) -> bool:
        """Always True."""
        return True

    def supports(self, model: Model) -> bool:
        """Every model: the simulation serves every modality and honours every capability."""
        return True

    async def close(self) -> None:
        """Nothing to release: the simulation holds no connections."""

    async def stream(self, model: Model, request: GenerationRequest) -> AsyncIterator[ProviderEvent]:
        """Stream a deterministic answer for ``request`` as ``model`` would, or fail as configured."""
        self.active_streams += 1
        try:
            async for event in self._stream(model, request):
                yield event
            self.completed_streams += 1
        except (asyncio.CancelledError, GeneratorExit):
            self.cancelled_streams += 1
            raise
        finally:
            self.active_streams -= 1

    async def _stream(self, model: Model, request: GenerationRequest) -> AsyncIterator[ProviderEvent]:
        p = self.profile
        if p.time_to_first_token_s:
            await asyncio.sleep(p.time_to_first_token_s)
        if _matches(model.id, p.fail_before_first):
            raise ProviderError(
                "PROVIDER_FAILED", f"simulated failure of {model.id} before the first token", retryable=True
            )
        text = request_text(request)
        seed = int.from_bytes(hashlib.blake2b(f"{model.id}\0{text}".encode(), digest_size=8).digest(), "big")
        rng = random.Random(seed)
        usage_in = estimate_tokens(text)
        if model.modality is not Modality.TEXT:
            yield _artifact(model.modality, model.id)
            yield Finished(FinishReason.STOP, Usage(usage_in, 0))
            return
        if request.options.tools:
            tool = request.options.tools[0]
            yield ToolCallEvent(f"call_{seed:016x}", tool.name, "{}")
            yield Finished(FinishReason.TOOL_CALLS, Usage(usage_in, 1))
            return
        limit = request.options.max_output_tokens
        count = min(p.tokens, limit) if limit else p.tokens
        tokens = _tokens(model, text, rng, p.tokens, structured=bool(request.options.json_schema))
        if request.options.reasoning:  # the typed frames a real provider sends, in their place
            yield ReasoningChunk(f"[simulated reasoning of {model.id}]")
        for i, token in enumerate(tokens[:count]):
            if i and p.inter_token_s:
                await asyncio.sleep(p.inter_token_s)
            if i == p.fail_after_tokens and _matches(model.id, p.fail_mid_stream):
                raise ProviderError(
                    "PROVIDER_FAILED", f"simulated failure of {model.id} mid-stream after {i} tokens", retryable=True
                )
            yield TextChunk(token)
        if request.options.web_search:
            answer = len("".join(tokens[:count]))
            yield Citation(f"https://example.com/simulated/{seed:016x}", "Simulated source", 0, answer)
        reason = FinishReason.LENGTH if limit and limit < p.tokens else FinishReason.STOP
        yield Finished(reason, Usage(usage_in, count))


def _tokens(model: Model, text: str, rng: random.Random, count: int, *, structured: bool) -> list[str]:
    """``count`` tokens: a label naming the model and the prompt's first words, then words drawn
    from a fixed vocabulary; JSON text cut into ``count`` pieces when ``structured``."""
    words = [f" {rng.choice(_WORDS)}" for _ in range(count)]
    if structured:
        body = json.dumps({"simulated": True, "model": model.id, "summary": "".join(words).strip()})
        step = max(1, math.ceil(len(body) / max(count, 1)))
        return [body[i : i + step] for i in range(0, len(body), step)]
    head = " ".join(text.split()[:3]) or "nothing"
    return ["[simulated", f" {model.id}]", f" re: {head}", ":", *words][:count]


def _artifact(modality: Modality, model_id: str) -> Artifact:
    """The placeholder a person recognises: a labelled test pattern, a test tone, an animated
    test pattern (see ``placeholder``)."""
    if modality is Modality.IMAGE:
        return Artifact("image/png", _placeholder_image(model_id), simulated=True)
    if modality is Modality.SPEECH:
        return Artifact("audio/wav", _placeholder_tone(), simulated=True)
    return Artifact("image/gif", _placeholder_video(model_id), simulated=True)


# The same model always gets the same placeholder: made once, then served from memory.
_placeholder_image = functools.lru_cache(maxsize=64)(placeholder.image)
_placeholder_video = functools.lru_cache(maxsize=64)(placeholder.video)
_placeholder_tone = functools.lru_cache(maxsize=1)(placeholder.tone)
