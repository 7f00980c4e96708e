"""Provider adapters and the registry that picks one for each model.

A model's catalog route names an adapter. The registry answers with the adapter configured under
that name, or with the built-in simulated provider when the adapter has no credentials and the
settings allow simulation. Which models are simulated is known at start-up and reported in
ListModels, in every decision and in the logs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from switchboard.errors import ConfigError
from switchboard.types import Model, Provider


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
            provider = adapters.get(model.adapter) or simulated
            if provider is None:
                missing.append(f"{model.id} (adapter {model.adapter!r})")
                continue
            self._by_model[model.id] = provider
        if missing:
            raise ConfigError("no provider is configured for " + ", ".join(missing) + " and simulation is not allowed")

    def for_model(self, model: Model) -> Provider:
        """The provider that serves ``model``."""
        return self._by_model[model.id]

    def is_simulated(self, model_id: str) -> bool:
        """True when the simulated provider serves the model."""
        provider = self._by_model.get(model_id)
        return provider is not None and provider.simulated

    @property
    def simulated_model_ids(self) -> list[str]:
        """The models the simulated provider serves, in catalog order."""
        return [mid for mid, p in self._by_model.items() if p.simulated]
