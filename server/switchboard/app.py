"""The wiring: builds the core objects and adapters from Settings, once per config load."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from switchboard.auth import KeyRing, key_ring
from switchboard.billing import Billing, BillingSettings, LedgerAccounts
from switchboard.catalog import build_catalog, load_config
from switchboard.convert import Messages
from switchboard.errors import ConfigError
from switchboard.generation import Generator
from switchboard.health import CircuitBreaker
from switchboard.ledger import AsyncLedger, Ledger, Store
from switchboard.limiter import LedgerSlots, MemoryLimiter, RedisLimiter, SlotLimiter
from switchboard.providers import ProviderRegistry, real_adapters
from switchboard.providers.http import Endpoint
from switchboard.providers.simulated import SimulatedProvider
from switchboard.router import Router
from switchboard.selection import Selector
from switchboard.settings import Settings, endpoints_for, read_keys_file
from switchboard.sharedhealth import LedgerHealthStore, RedisHealthStore, SharedHealth
from switchboard.stores import open_store
from switchboard.tracing import Tracing
from switchboard.types import Catalog, HealthStore, ModelHealth, Provider
from switchboard.v1 import catalog_pb2


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
    health: ModelHealth
    messages: Messages
    router: Router
    keys: KeyRing = field(default_factory=lambda: KeyRing(()))
    tracing: Tracing | None = None  # OpenTelemetry export, when --otlp-endpoint is set
    # Run on shutdown after the last stream ended and settled, before the ledger and limiter close
    # (release credit holds, concurrency slots, provider clients). Appended to by whoever owns the resource.
    on_shutdown: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    # Generate streams running on this app, and what happens to its provider clients once a
    # reload has replaced it (see ``retire``).
    streams: int = 0
    _keep: list[Provider] | None = None  # set when retired: the successor's providers, left open
    _providers_closed: bool = False

    def stream_started(self) -> None:
        """A Generate stream starts on this app."""
        self.streams += 1

    async def stream_ended(self) -> None:
        """A Generate stream of this app ended; the last one of a retired app closes its providers."""
        self.streams -= 1
        if self._keep is not None and self.streams == 0:
            await self._close_providers()

    async def retire(self, successor: App) -> None:
        """A reload replaced this app with ``successor``: close the provider clients that
        ``successor`` does not share as soon as this app's last stream has ended (now, if none is
        running). The ledger, limiter and health carry over and stay open."""
        self._keep = successor.providers.adapters()
        if self.streams == 0:
            await self._close_providers()

    async def _close_providers(self) -> None:
        if not self._providers_closed:
            self._providers_closed = True
            await self.providers.close(keep=self._keep or ())

    async def shutdown(self) -> None:
        """Wait for cancelled streams to settle their credits, run the ``on_shutdown`` callbacks (each
        once; one failing does not stop the rest), then close."""
        await self.billing.drain()
        callbacks, self.on_shutdown = self.on_shutdown, []
        for callback in callbacks:
            try:
                await callback()
            except Exception:  # the remaining callbacks and the close still run
                structlog.get_logger("switchboard").exception("on_shutdown_failed", callback=repr(callback))
        await self.close()

    async def close(self) -> None:
        """Release the providers' connections, the ledger's threads and connections, and the
        limiter's."""
        await self._close_providers()
        await self.limiter.close()
        await self.health.close()
        self.ledger.close()
        if self.tracing is not None:
            await asyncio.to_thread(self.tracing.shutdown)  # flushes over HTTP: off the event loop


_REDIS = ("redis://", "rediss://", "unix://")


def open_limiter(settings: Settings, ledger: AsyncLedger) -> SlotLimiter:
    """The limiter the settings name: ``ledger`` (slots in the ledger's database; the default),
    ``memory`` (this process only) or ``redis://...``."""
    if settings.limiter == "ledger":
        return LedgerSlots(ledger, lease_s=settings.lease_s)
    if settings.limiter == "memory":
        return MemoryLimiter()
    if settings.limiter.startswith(_REDIS):
        return RedisLimiter(settings.limiter, lease_s=settings.lease_s)
    raise ConfigError(f"--limiter {settings.limiter!r}: use ledger, memory or redis://HOST:PORT/DB")


def open_health(settings: Settings, store: Store) -> ModelHealth:
    """Model health: breakers shared by every process through Redis when the limiter uses it,
    otherwise through the ledger's ``store``; per process when ``--health-sync-interval`` is 0."""
    breaker = CircuitBreaker(settings.breaker_failures, settings.breaker_cooldown_s)
    if settings.health_sync_s <= 0:
        return breaker
    redis = settings.limiter.startswith(_REDIS)
    shared: HealthStore = RedisHealthStore(settings.limiter) if redis else LedgerHealthStore(store)
    return SharedHealth(breaker, shared, settings.health_sync_s)


def provider_endpoints(settings: Settings, config: catalog_pb2.Config, name: str) -> dict[str, Endpoint]:
    """The providers with credentials: keys from the keys file the config names (read at every
    load, so a reload picks up rotated keys; a relative path is taken from the config file's
    directory), overridden by ``--provider-keys-file`` and the environment."""
    keys: dict[str, str] = {}
    if config.provider_keys_file:
        path = Path(config.provider_keys_file)
        if not path.is_absolute() and settings.config_path:
            path = Path(settings.config_path).parent / path
        try:
            keys = read_keys_file(path)
        except ConfigError as exc:
            raise ConfigError(f"{name}: providerKeysFile: {exc}") from None
    keys.update(settings.provider_keys)
    return endpoints_for(
        keys, settings.provider_base_urls, settings.provider_connect_timeout_s, settings.provider_read_timeout_s
    )


def start_facts(settings: Settings) -> tuple[int, list[str]]:
    """How many API keys the config lists and which models the simulator would answer, without
    opening the ledger: what a supervisor of several workers reports once for all of them."""
    config, name = load_config(settings.config_path)
    catalog = build_catalog(config, name)
    simulator = SimulatedProvider(settings.simulation) if settings.allow_simulated else None
    registry = ProviderRegistry(catalog.models, real_adapters(provider_endpoints(settings, config, name)), simulator)
    asyncio.run(registry.close())
    return len(config.api_keys), registry.simulated_model_ids


def build_app(settings: Settings, adapters: Mapping[str, Provider] | None = None, reuse: App | None = None) -> App:
    """Load the config and wire the core to its adapters; raises ConfigError on a bad config.

    ``adapters`` maps adapter names to providers; models whose adapter is missing are simulated
    when the settings allow it. ``reuse`` is the running app on a reload: its ledger and limiter
    (the state shared with streams still in flight) carry over, and the ledger gets the new plans
    only once everything else loaded.
    """
    config, name = load_config(settings.config_path)
    catalog = build_catalog(config, name)
    keys = key_ring(((k.name, k.sha256, k.role) for k in config.api_keys), name)
    simulator = SimulatedProvider(settings.simulation)
    chosen = dict(adapters) if adapters is not None else real_adapters(provider_endpoints(settings, config, name))
    providers = ProviderRegistry(catalog.models, chosen, simulator if settings.allow_simulated else None)
    tracing = (
        reuse.tracing if reuse is not None else (Tracing(settings.otlp_endpoint) if settings.otlp_endpoint else None)
    )
    if reuse is not None:
        ledger, limiter, health = reuse.ledger, reuse.limiter, reuse.health
    else:
        store = open_store(settings.ledger, settings.ledger_pool)
        ledger = AsyncLedger(Ledger(store, catalog.plans))
        limiter = open_limiter(settings, ledger)
        health = open_health(settings, store)
    billing_settings = BillingSettings(
        hold_ttl_s=settings.hold_ttl_s,
        keepalive_s=max(0.05, min(settings.hold_ttl_s, settings.lease_s) / 3),
        lease_s=settings.lease_s,
        auto_create_accounts=settings.auto_create_accounts,
    )
    accounts = LedgerAccounts(ledger, catalog, settings.auto_create_accounts, settings.balance_cache_s)
    selector = Selector(catalog)
    generator = Generator(providers, observer=health, tracer=tracing.tracer if tracing else None)
    billing = Billing(ledger, limiter, billing_settings, accounts)
    app = App(
        settings=settings,
        catalog=catalog,
        selector=selector,
        providers=providers,
        simulator=simulator,
        generator=generator,
        ledger=ledger,
        limiter=limiter,
        accounts=accounts,
        billing=billing,
        health=health,
        messages=Messages(catalog.models),
        router=Router(accounts, selector, health, billing, generator, providers),
        keys=keys,
        tracing=tracing,
    )
    if reuse is not None:
        app.on_shutdown = reuse.on_shutdown
        # Streams still running on the replaced app settle through its meters: shutdown waits for
        # them too.
        app.billing.closing = reuse.billing.closing
        app.billing.running = reuse.billing.running
        ledger.use_plans(catalog.plans)
    return app
