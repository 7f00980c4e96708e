"""The wiring: builds the core objects and adapters from Settings, once per config load."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from switchboard.catalog import load_catalog
from switchboard.convert import Messages
from switchboard.generation import Generator
from switchboard.providers import ProviderRegistry
from switchboard.providers.simulated import SimulatedProvider
from switchboard.selection import ALWAYS_AVAILABLE, Selector
from switchboard.settings import Settings
from switchboard.types import AccountState, Catalog, HealthView, Provider


class PlanOnlyAccounts:
    """Accounts without a ledger: every account is on the default plan and credits are not
    tracked, so nothing is unaffordable."""

    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog

    async def state(self, account_id: str) -> AccountState:
        """The account's plan (the default plan) and an untracked balance."""
        return AccountState(account_id=account_id, plan=self._catalog.default_plan, balance=None)


@dataclass
class App:
    """The objects one server works with."""

    settings: Settings
    catalog: Catalog
    selector: Selector
    providers: ProviderRegistry
    simulator: SimulatedProvider
    generator: Generator
    accounts: PlanOnlyAccounts
    health: HealthView
    messages: Messages


def build_app(settings: Settings, adapters: Mapping[str, Provider] | None = None) -> App:
    """Load the config and wire the core to its adapters; raises ConfigError on a bad config.

    ``adapters`` maps adapter names to providers; models whose adapter is missing are simulated
    when the settings allow it.
    """
    catalog = load_catalog(settings.config_path)
    simulator = SimulatedProvider(settings.simulation)
    adapters = dict(adapters or {})
    providers = ProviderRegistry(catalog.models, adapters, simulator if settings.allow_simulated else None)
    return App(
        settings=settings,
        catalog=catalog,
        selector=Selector(catalog),
        providers=providers,
        simulator=simulator,
        generator=Generator(providers),
        accounts=PlanOnlyAccounts(catalog),
        health=ALWAYS_AVAILABLE,
        messages=Messages(catalog.models),
    )
