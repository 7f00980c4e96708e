"""Provider adapters and the registry that picks one for each model.

A model's catalog route names an adapter. The registry answers with the adapter configured under
that name, or with the built-in simulated provider when the adapter has no credentials and the
settings allow simulation. Which models are simulated is known at start-up and reported in
ListModels, in every decision and in the logs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from switchboard.errors import ConfigError
from switchboard.providers.http import Endpoint
from switchboard.types import Model, Provider


@dataclass(frozen=True, slots=True)
class AdapterSpec:
    """A real adapter: its default base URL and the environment variable holding its key."""

    base_url: str
    key_env: str


ADAPTERS: dict[str, AdapterSpec] = {
    "openai": AdapterSpec("https://api.openai.com/v1", "OPENAI_API_KEY"),
    "xai": AdapterSpec("https://api.x.ai/v1", "XAI_API_KEY"),
    "anthropic": AdapterSpec("https://api.anthropic.com", "ANTHROPIC_API_KEY"),
    "gemini": AdapterSpec("https://generativelanguage.googleapis.com", "GEMINI_API_KEY"),
    "openai_compat": AdapterSpec("", "OPENAI_COMPAT_API_KEY"),
    "fal": AdapterSpec("https://queue.fal.run", "FAL_KEY"),
}
"""Adapters with a real implementation. `openai_compat` is a self-hosted OpenAI-compatible server
(vLLM, Ollama, llama.cpp): it needs a base URL and may need no key."""


def real_adapters(endpoints: Mapping[str, Endpoint]) -> dict[str, Provider]:
    """One adapter per configured endpoint."""
    from switchboard.providers.anthropic import AnthropicProvider  # noqa: PLC0415 - avoids an import cycle
    from switchboard.providers.fal import FalProvider  # noqa: PLC0415
    from switchboard.providers.gemini import GeminiProvider  # noqa: PLC0415
    from switchboard.providers.openai_compat import OpenAICompatProvider  # noqa: PLC0415
    from switchboard.providers.openai_media import OpenAIProvider  # noqa: PLC0415

    made: dict[str, Provider] = {}
    for name, endpoint in endpoints.items():
        if name == "openai":
            made[name] = OpenAIProvider(name, endpoint)
        elif name == "xai":  # text, images (edits as JSON) and video
            made[name] = OpenAIProvider(name, endpoint, speech=False, video=True, json_edits=True)
        elif name == "openai_compat":
            made[name] = OpenAICompatProvider(name, endpoint)
        elif name == "anthropic":
            made[name] = AnthropicProvider(name, endpoint)
        elif name == "gemini":
            made[name] = GeminiProvider(name, endpoint)
        elif name == "fal":
            made[name] = FalProvider(name, endpoint)
    return made


class ProviderRegistry:
    """Maps every catalog model to the provider that serves it."""

    def __init__(
        self,
        models: Iterable[Model],
        adapters: Mapping[str, Provider],
        simulated: Provider | None,
    ) -> None:
        self._by_model: dict[str, Provider] = {}
        missing: list[str] = []
        for model in models:
            provider = adapters.get(model.adapter)
            supports = getattr(provider, "supports", None)
            if provider is None or (supports is not None and not supports(model)):
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
            close = getattr(provider, "close", None)
            if close is not None and id(provider) not in kept:
                await close()

    def is_simulated(self, model_id: str) -> bool:
        """True when the simulated provider serves the model."""
        provider = self._by_model.get(model_id)
        return provider is not None and provider.simulated

    @property
    def simulated_model_ids(self) -> list[str]:
        """The models the simulated provider serves, in catalog order."""
        return [mid for mid, p in self._by_model.items() if p.simulated]
