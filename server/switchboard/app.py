"""The wiring: builds the core objects and adapters from Settings, once per config load."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from switchboard.billing import Billing, BillingSettings, LedgerAccounts
from switchboard.catalog import load_catalog
from switchboard.convert import Messages
from switchboard.errors import ConfigError
from switchboard.generation import Generator
from switchboard.ledger import AsyncLedger, Ledger
from switchboard.limiter import LedgerSlots, MemoryLimiter, RedisLimiter, SlotLimiter
from switchboard.providers import ProviderRegistry
from switchboard.providers.simulated import SimulatedProvider
from switchboard.selection import ALWAYS_AVAILABLE, Selector
from switchboard.settings import Settings
from switchboard.stores import open_store
from switchboard.types import Catalog, HealthView, Provider


@dataclass
class App:
    """The objects one server works with."""

    settings: Settings
    catalog: Catalog
    selector: Selector
    providers: ProviderRegistry
    simulator: SimulatedProvider
    generator: Generator
    ledger: AsyncLedger
    limiter: SlotLimiter
    accounts: LedgerAccounts
    billing: Billing
    health: HealthView
    messages: Messages

    async def close(self) -> None:
        """Release the ledger's threads and connections and the limiter's."""
        await self.limiter.close()
        self.ledger.close()


def open_limiter(settings: Settings, ledger: AsyncLedger) -> SlotLimiter:
    """The limiter the settings name: ``ledger`` (slots in the ledger's database; the default),
    ``memory`` (this process only) or ``redis://...``."""
    if settings.limiter == "ledger":
        return LedgerSlots(ledger, lease_s=settings.lease_s)
    if settings.limiter == "memory":
        return MemoryLimiter()
    if settings.limiter.startswith(("redis://", "rediss://", "unix://")):
        return RedisLimiter(settings.limiter, lease_s=settings.lease_s)
    raise ConfigError(f"--limiter {settings.limiter!r}: use ledger, memory or redis://HOST:PORT/DB")


def build_app(settings: Settings, adapters: Mapping[str, Provider] | None = None) -> App:
    """Load the config and wire the core to its adapters; raises ConfigError on a bad config.

    ``adapters`` maps adapter names to providers; models whose adapter is missing are simulated
    when the settings allow it.
    """
    catalog = load_catalog(settings.config_path)
    simulator = SimulatedProvider(settings.simulation)
    providers = ProviderRegistry(catalog.models, dict(adapters or {}), simulator if settings.allow_simulated else None)
    ledger = AsyncLedger(Ledger(open_store(settings.ledger), catalog.plans))
    limiter = open_limiter(settings, ledger)
    billing_settings = BillingSettings(
        hold_ttl_s=settings.hold_ttl_s,
        keepalive_s=max(0.05, min(settings.hold_ttl_s, settings.lease_s) / 3),
        lease_s=settings.lease_s,
        auto_create_accounts=settings.auto_create_accounts,
    )
    accounts = LedgerAccounts(ledger, catalog, settings.auto_create_accounts, settings.balance_cache_s)
    return App(
        settings=settings,
        catalog=catalog,
        selector=Selector(catalog),
        providers=providers,
        simulator=simulator,
        generator=Generator(providers),
        ledger=ledger,
        limiter=limiter,
        accounts=accounts,
        billing=Billing(ledger, limiter, billing_settings, accounts),
        health=ALWAYS_AVAILABLE,
        messages=Messages(catalog.models),
    )
