"""Provider adapters and the registry that picks one for each model.

A model's catalog route names an adapter. The registry answers with the adapter configured under
that name, or with the built-in simulated provider when the adapter has no credentials and the
settings allow simulation. Which models are simulated is known at start-up and reported in
ListModels, in every decision and in the logs.

Each adapter also says what it carries on the wire for a model (``AdapterSpec.encodes``). The
registry refuses a catalog in which a model claims a capability its route's adapter cannot encode,
with or without credentials: a claim the wire drops would make selection send the request there
and the caller pay for an answer to a question that was never asked.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass

from switchboard.errors import ConfigError
from switchboard.providers import anthropic, fal, gemini, openai_compat, openai_media, openai_responses
from switchboard.providers.http import Endpoint
from switchboard.types import Capabilities, GenerationRequest, Modality, Model, Provider, ProviderEvent

Encodes = Callable[[Model], Capabilities]
"""What an adapter carries on the wire for a model: the capabilities it encodes."""


def _by_modality(text: Encodes, media: Encodes) -> Encodes:
    """An adapter that serves text and media through different modules."""
    return lambda model: text(model) if model.modality is Modality.TEXT else media(model)


@dataclass(frozen=True, slots=True)
class AdapterSpec:
    """A real adapter: its default base URL, the environment variable holding its key, and what
    it encodes for a model."""

    base_url: str
    key_env: str
    encodes: Encodes


ADAPTERS: dict[str, AdapterSpec] = {
    "openai": AdapterSpec(
        "https://api.openai.com/v1", "OPENAI_API_KEY", _by_modality(openai_responses.encodes, openai_media.encodes)
    ),
    "xai": AdapterSpec("https://api.x.ai/v1", "XAI_API_KEY", _by_modality(openai_compat.encodes, openai_media.encodes)),
    "anthropic": AdapterSpec("https://api.anthropic.com", "ANTHROPIC_API_KEY", anthropic.encodes),
    "gemini": AdapterSpec("https://generativelanguage.googleapis.com", "GEMINI_API_KEY", gemini.encodes),
    "openai_compat": AdapterSpec("", "OPENAI_COMPAT_API_KEY", openai_compat.encodes),
    "fal": AdapterSpec("https://queue.fal.run", "FAL_KEY", fal.encodes),
}
"""Adapters with a real implementation. `openai_compat` is a self-hosted OpenAI-compatible server
(vLLM, Ollama, llama.cpp): it needs a base URL and may need no key."""


def check_encodings(models: Iterable[Model]) -> None:
    """Raise ``ConfigError`` naming every model that claims a capability its route's adapter
    cannot put on the wire. Routes to an adapter without a real implementation are served only
    by the simulated provider, which honours every claim, and are not checked."""
    problems = []
    for model in models:
        spec = ADAPTERS.get(model.adapter)
        if spec is None:
            continue
        missing = model.capabilities - spec.encodes(model)
        if missing:
            names = ", ".join(f"CAPABILITY_{c.name}" for c in sorted(missing))
            problems.append(f"{model.id} claims {names}, which adapter {model.adapter!r} cannot encode")
    if problems:
        raise ConfigError("; ".join(problems))


class ByModality:
    """One adapter name served by several providers, one per modality (OpenAI's text goes to the
    Responses API, its images and speech to the media endpoints)."""

    def __init__(self, name: str, parts: Mapping[Modality, Provider]) -> None:
        self._name = name
        self._parts = dict(parts)

    @property
    def name(self) -> str:
        """The adapter's name."""
        return self._name

    @property
    def simulated(self) -> bool:
        """Real providers are not simulated."""
        return False

    def supports(self, model: Model) -> bool:
        """Whether a part serves the model's modality and supports the model."""
        part = self._parts.get(model.modality)
        return part is not None and part.supports(model)

    def stream(self, model: Model, request: GenerationRequest) -> AsyncIterator[ProviderEvent]:
        """The stream of the part serving the model's modality."""
        return self._parts[model.modality].stream(model, request)

    async def close(self) -> None:
        """Close every part."""
        for part in {id(p): p for p in self._parts.values()}.values():
            await part.close()


def real_adapters(endpoints: Mapping[str, Endpoint]) -> dict[str, Provider]:
    """One adapter per configured endpoint."""
    made: dict[str, Provider] = {}
    for name, endpoint in endpoints.items():
        if name == "openai":
            media = openai_media.OpenAIProvider(name, endpoint)
            text = openai_responses.OpenAIResponsesProvider(name, endpoint)
            made[name] = ByModality(name, {Modality.TEXT: text, Modality.IMAGE: media, Modality.SPEECH: media})
        elif name == "xai":  # text, images (edits as JSON) and video
            made[name] = openai_media.OpenAIProvider(name, endpoint, speech=False, video=True, json_edits=True)
        elif name == "openai_compat":
            made[name] = openai_compat.OpenAICompatProvider(name, endpoint)
        elif name == "anthropic":
            made[name] = anthropic.AnthropicProvider(name, endpoint)
        elif name == "gemini":
            made[name] = gemini.GeminiProvider(name, endpoint)
        elif name == "fal":
            made[name] = fal.FalProvider(name, endpoint)
    return made


class ProviderRegistry:
    """Maps every catalog model to the provider that serves it."""

    def __init__(
        self,
        models: Iterable[Model],
        adapters: Mapping[str, Provider],
        simulated: Provider | None,
    ) -> None:
        models = tuple(models)
        check_encodings(models)
        self._by_model: dict[str, Provider] = {}
        missing: list[str] = []
        for model in models:
            provider = adapters.get(model.adapter)
            if provider is None or not provider.supports(model):
                provider = simulated  # no credentials, or a modality the adapter does not serve yet
            if provider is None:
                missing.append(f"{model.id} (adapter {model.adapter!r})")
                continue
            self._by_model[model.id] = provider
        if missing:
            raise ConfigError("no provider is configured for " + ", ".join(missing) + " and simulation is not allowed")

    def for_model(self, model: Model) -> Provider:
        """The provider that serves ``model``."""
        return self._by_model[model.id]

    def adapters(self) -> list[Provider]:
        """Each distinct provider object serving a model of this registry."""
        return list({id(p): p for p in self._by_model.values()}.values())

    async def close(self, keep: Iterable[Provider] = ()) -> None:
        """Close every adapter's connections, except those of the providers in ``keep`` (still in
        use by another registry)."""
        kept = {id(p) for p in keep}
        for provider in self.adapters():
            if id(provider) not in kept:
                await provider.close()

    def is_simulated(self, model_id: str) -> bool:
        """True when the simulated provider serves the model."""
        provider = self._by_model.get(model_id)
        return provider is not None and provider.simulated

    @property
    def simulated_model_ids(self) -> list[str]:
        """The models the simulated provider serves, in catalog order."""
        return [mid for mid, p in self._by_model.items() if p.simulated]
