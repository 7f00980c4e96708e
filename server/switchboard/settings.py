"""One frozen Settings object, built once at start-up from the command line and the environment
(``SWITCHBOARD_<FLAG>``, e.g. ``SWITCHBOARD_LISTEN``) and passed down. Nothing deeper reads
``os.environ``."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from switchboard.convert import Limits
from switchboard.errors import ConfigError
from switchboard.providers import ADAPTERS
from switchboard.providers.http import Endpoint
from switchboard.providers.simulated import SimulationProfile


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the server is configured with."""

    listen: str = "127.0.0.1:50051"
    config_path: str | None = None
    port_file: str | None = None
    log_format: str = "auto"  # auto: console when stdout is a terminal, else JSON lines
    log_level: str = "info"
    grace_s: float = 10.0
    allow_simulated: bool = True
    simulation: SimulationProfile = field(
        default_factory=lambda: SimulationProfile(time_to_first_token_s=0.15, inter_token_s=0.02)
    )
    limits: Limits = field(default_factory=Limits)
    max_message_bytes: int = 32 * 1024 * 1024
    ledger: str = "sqlite:var/switchboard.db"
    ledger_pool: int = 8  # PostgreSQL connections (and ledger threads) per process
    limiter: str = "ledger"
    hold_ttl_s: float = 300.0
    lease_s: float = 30.0
    sweep_interval_s: float = 5.0
    auto_create_accounts: bool = False
    balance_cache_s: float = 1.0
    workers: int = 1
    reuse_port: bool = False
    # Who this process is across restarts: a restarted process with the same id releases the
    # holds and slots its previous incarnation left at once. Empty: the listen address (with a
    # fixed port) and worker index name it; with port 0 nothing is reclaimed.
    instance_id: str = ""
    supervised: bool = False  # a worker of `--workers N`: the supervisor prints the start-up notices
    event_loop: str = "auto"  # "uvloop", "asyncio", or "auto": uvloop when it is installed
    # Provider keys (from --provider-keys-file, overridden by the environment; a keys file the
    # config names fills in the rest at each load), base URLs given by flag, and timeouts.
    provider_keys: Mapping[str, str] = field(default_factory=dict, repr=False)
    provider_base_urls: Mapping[str, str] = field(default_factory=dict)
    provider_connect_timeout_s: float = 5.0
    provider_read_timeout_s: float = 60.0
    breaker_failures: int = 3
    breaker_cooldown_s: float = 30.0
    health_sync_s: float = 0.5  # how often model health is read from the shared store; 0: per process
    # Operations: TLS, authentication, metrics and transport limits (docs/operations.md).
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_client_ca: str | None = None
    allow_unauthenticated: bool = False
    metrics_listen: str | None = None
    metrics_dir: str | None = None  # set in a supervisor's workers: they write metrics there (multiprocess mode)
    otlp_endpoint: str = ""  # OTLP/HTTP collector base URL (spans go to {endpoint}/v1/traces); off when empty
    max_concurrent_streams: int = 1000
    keepalive_time_s: float = 30.0
    keepalive_timeout_s: float = 10.0
    keepalive_permit_without_calls: bool = True
    min_ping_interval_s: float = 10.0


def add_serve_arguments(parser: argparse.ArgumentParser, environ: Mapping[str, str]) -> None:
    """Add the ``serve`` flags, each defaulting to its ``SWITCHBOARD_*`` variable when set."""
    d = Settings()

    def env(flag: str, default: object) -> object:
        return environ.get("SWITCHBOARD_" + flag.upper().replace("-", "_"), default)

    def ms(seconds: float) -> int:
        return round(seconds * 1000)

    parser.add_argument("--listen", default=env("listen", d.listen), help="HOST:PORT to serve on; port 0 picks one")
    parser.add_argument("--config", default=env("config", None), help="config file (YAML or TOML); default: embedded")
    parser.add_argument("--port-file", default=env("port-file", None), help="write the bound port here once serving")
    parser.add_argument(
        "--log-format",
        choices=("auto", "json", "console"),
        default=env("log-format", d.log_format),
        help="auto (default): console when stdout is a terminal, else JSON lines",
    )
    parser.add_argument("--log-level", default=env("log-level", d.log_level))
    parser.add_argument(
        "--workers",
        type=int,
        default=env("workers", os.cpu_count() or 1),
        help="server processes sharing the port, one event loop each (default: the number of cores)",
    )
    parser.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--supervised", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--event-loop",
        choices=("auto", "uvloop", "asyncio"),
        default=env("event-loop", d.event_loop),
        help="the event loop each worker runs: uvloop, asyncio, or auto (uvloop when installed)",
    )
    parser.add_argument("--grace", type=float, default=env("grace", d.grace_s), help="seconds streams get on SIGTERM")
    parser.add_argument(
        "--no-simulation",
        action="store_true",
        default=str(env("no-simulation", "")).lower() in ("1", "true", "yes"),
        help="refuse to start when a model's provider has no credentials, instead of simulating it",
    )
    sim = d.simulation
    parser.add_argument("--sim-ttft-ms", type=int, default=env("sim-ttft-ms", ms(sim.time_to_first_token_s)))
    parser.add_argument("--sim-inter-token-ms", type=int, default=env("sim-inter-token-ms", ms(sim.inter_token_s)))
    parser.add_argument("--sim-tokens", type=int, default=env("sim-tokens", sim.tokens))
    parser.add_argument(
        "--sim-fail-before",
        action="append",
        default=[],
        metavar="MODEL_ID",
        help="simulated calls to this model fail before the first token (repeatable; * for all)",
    )
    parser.add_argument(
        "--sim-fail-mid",
        action="append",
        default=[],
        metavar="MODEL_ID",
        help="simulated calls to this model fail mid-stream (repeatable; * for all)",
    )
    parser.add_argument("--max-prompt-chars", type=int, default=env("max-prompt-chars", d.limits.max_prompt_chars))
    add_operations_arguments(parser, env, d)
    add_provider_arguments(parser, env, environ, d)
    parser.add_argument("--ledger", default=env("ledger", d.ledger), help="sqlite:PATH or postgresql://...")
    parser.add_argument(
        "--ledger-pool",
        type=int,
        default=env("ledger-pool", d.ledger_pool),
        help="PostgreSQL ledger: connections (and ledger threads) per server process",
    )
    parser.add_argument(
        "--limiter",
        default=env("limiter", d.limiter),
        help="ledger (slots in the ledger database), memory (this process) or redis://HOST:PORT/DB",
    )
    parser.add_argument(
        "--hold-ttl",
        type=float,
        default=env("hold-ttl", d.hold_ttl_s),
        help="seconds an unrefreshed credit hold lives before the sweeper releases it",
    )
    parser.add_argument(
        "--lease",
        type=float,
        default=env("lease", d.lease_s),
        help="seconds an unrefreshed concurrency lease lives (Redis limiter)",
    )
    parser.add_argument(
        "--balance-cache",
        type=float,
        default=env("balance-cache", d.balance_cache_s),
        help="seconds selection may use a balance it read before (holds always check atomically)",
    )
    parser.add_argument("--sweep-interval", type=float, default=env("sweep-interval", d.sweep_interval_s))
    parser.add_argument(
        "--instance-id",
        default=env("instance-id", d.instance_id),
        help="this server's name across restarts: a restart releases its previous incarnation's holds at once"
        " (default: host and port of --listen, when the port is fixed)",
    )
    parser.add_argument(
        "--auto-create-accounts",
        action="store_true",
        default=str(env("auto-create-accounts", "")).lower() in ("1", "true", "yes"),
        help="create unknown accounts on the default plan at first use (development)",
    )


def add_operations_arguments(
    parser: argparse.ArgumentParser, env: Callable[[str, object], object], d: Settings
) -> None:
    """The flags for TLS, authentication, metrics and transport limits."""

    def flag(name: str) -> bool:
        return str(env(name, "")).lower() in ("1", "true", "yes")

    parser.add_argument(
        "--max-attachment-bytes", type=int, default=env("max-attachment-bytes", d.limits.max_attachment_bytes)
    )
    parser.add_argument("--tls-cert", default=env("tls-cert", None), help="PEM certificate chain: serve TLS")
    parser.add_argument("--tls-key", default=env("tls-key", None), help="PEM private key of --tls-cert")
    parser.add_argument(
        "--tls-client-ca", default=env("tls-client-ca", None), help="PEM CA bundle: require client certificates (mTLS)"
    )
    parser.add_argument(
        "--allow-unauthenticated",
        action="store_true",
        default=flag("allow-unauthenticated"),
        help="serve without API keys on a non-loopback address (the config lists no api_keys)",
    )
    parser.add_argument(
        "--metrics-listen",
        default=env("metrics-listen", d.metrics_listen),
        help="HOST:PORT for Prometheus /metrics over HTTP; off when not given",
    )
    # Given to its workers by a supervisor, with PROMETHEUS_MULTIPROC_DIR (read by prometheus_client).
    parser.add_argument("--metrics-dir", default=None, help=argparse.SUPPRESS)
    parser.add_argument(
        "--otlp-endpoint",
        default=env("otlp-endpoint", d.otlp_endpoint),
        help="OTLP/HTTP collector URL (e.g. http://127.0.0.1:4318): export OpenTelemetry traces; off when not given",
    )
    parser.add_argument(
        "--max-concurrent-streams", type=int, default=env("max-concurrent-streams", d.max_concurrent_streams)
    )
    parser.add_argument("--keepalive-time", type=float, default=env("keepalive-time", d.keepalive_time_s))
    parser.add_argument("--keepalive-timeout", type=float, default=env("keepalive-timeout", d.keepalive_timeout_s))
    parser.add_argument(
        "--keepalive-require-calls",
        action="store_true",
        default=flag("keepalive-require-calls"),
        help="refuse client keepalive pings on connections with no call in flight",
    )
    parser.add_argument(
        "--min-ping-interval",
        type=float,
        default=env("min-ping-interval", d.min_ping_interval_s),
        help="seconds a client must leave between keepalive pings",
    )


def add_provider_arguments(
    parser: argparse.ArgumentParser, env: Callable[[str, object], object], environ: Mapping[str, str], d: Settings
) -> None:
    """Provider flags. Keys come only from the environment (OPENAI_API_KEY, ANTHROPIC_API_KEY,
    GEMINI_API_KEY, XAI_API_KEY, OPENAI_COMPAT_API_KEY) or from a secrets file mapping those names
    to keys; never from the catalog, never from a flag (flags show in process lists)."""
    for name in ADAPTERS:
        flag = name.replace("_", "-")
        parser.add_argument(f"--{flag}-base-url", default=env(f"{flag}-base-url", ""), help=f"{name} API base URL")
    parser.add_argument(
        "--provider-keys-file",
        default=env("provider-keys-file", ""),
        help="a YAML or JSON file mapping key variable names (e.g. OPENAI_API_KEY) to keys",
    )
    parser.add_argument("--provider-connect-timeout", type=float, default=env("provider-connect-timeout", 5.0))
    parser.add_argument(
        "--provider-read-timeout",
        type=float,
        default=env("provider-read-timeout", 60.0),
        help="seconds to wait for each piece of a provider's answer",
    )
    parser.add_argument(
        "--breaker-failures",
        type=int,
        default=env("breaker-failures", d.breaker_failures),
        help="consecutive failures that make a model cool down",
    )
    parser.add_argument(
        "--breaker-cooldown",
        type=float,
        default=env("breaker-cooldown", d.breaker_cooldown_s),
        help="seconds a failing model is skipped by automatic selection",
    )
    parser.add_argument(
        "--health-sync-interval",
        type=float,
        default=env("health-sync-interval", d.health_sync_s),
        help="seconds between reads of the model health all processes share (in Redis when --limiter is "
        "redis://..., else in the ledger's database); 0 keeps model health per process",
    )
    parser.set_defaults(
        provider_environ={
            spec.key_env: environ[spec.key_env] for spec in ADAPTERS.values() if environ.get(spec.key_env)
        }
    )


def read_keys_file(path: str | Path) -> dict[str, str]:
    """A provider keys file: YAML or JSON mapping key variable names (OPENAI_API_KEY, ...) to keys.
    Errors name the file, never a key."""
    import yaml  # noqa: PLC0415

    try:
        with open(path, encoding="utf-8") as fh:
            loaded = yaml.safe_load(fh) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read the provider keys file ({type(exc).__name__})") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: must map key names to keys")
    return {str(k): str(v) for k, v in loaded.items()}


def endpoints_for(
    keys: Mapping[str, str], base_urls: Mapping[str, str], connect_s: float, read_s: float
) -> dict[str, Endpoint]:
    """An endpoint for every adapter with a key (or, for openai_compat, a base URL given)."""
    endpoints = {}
    for name, spec in ADAPTERS.items():
        base = base_urls.get(name) or spec.base_url
        key = keys.get(spec.key_env, "")
        if base and (key or (name == "openai_compat" and base_urls.get(name))):
            endpoints[name] = Endpoint(base, key, connect_s, read_s)
    return endpoints


def provider_keys(args: argparse.Namespace) -> dict[str, str]:
    """Keys from ``--provider-keys-file``, overridden by the environment's."""
    keys = read_keys_file(args.provider_keys_file) if args.provider_keys_file else {}
    keys.update(getattr(args, "provider_environ", {}) or {})
    return keys


def provider_base_urls(args: argparse.Namespace) -> dict[str, str]:
    """The base URLs given by flag, per adapter."""
    return {name: url for name in ADAPTERS if (url := getattr(args, f"{name}_base_url"))}


def settings_from_args(args: argparse.Namespace) -> Settings:
    """The Settings for parsed ``serve`` arguments."""
    return Settings(
        listen=args.listen,
        config_path=args.config,
        port_file=args.port_file,
        log_format=args.log_format,
        log_level=args.log_level,
        grace_s=float(args.grace),
        allow_simulated=not args.no_simulation,
        simulation=SimulationProfile(
            time_to_first_token_s=int(args.sim_ttft_ms) / 1000,
            inter_token_s=int(args.sim_inter_token_ms) / 1000,
            tokens=int(args.sim_tokens),
            fail_before_first=frozenset(args.sim_fail_before),
            fail_mid_stream=frozenset(args.sim_fail_mid),
        ),
        limits=Limits(max_prompt_chars=int(args.max_prompt_chars), max_attachment_bytes=int(args.max_attachment_bytes)),
        ledger=args.ledger,
        ledger_pool=max(1, int(args.ledger_pool)),
        limiter=args.limiter,
        hold_ttl_s=float(args.hold_ttl),
        lease_s=float(args.lease),
        sweep_interval_s=float(args.sweep_interval),
        balance_cache_s=float(args.balance_cache),
        auto_create_accounts=args.auto_create_accounts,
        workers=max(1, int(args.workers)),
        reuse_port=args.reuse_port,
        instance_id=str(args.instance_id or ""),
        supervised=args.supervised,
        event_loop=args.event_loop,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        tls_client_ca=args.tls_client_ca,
        allow_unauthenticated=args.allow_unauthenticated,
        metrics_listen=args.metrics_listen or None,
        metrics_dir=args.metrics_dir or None,
        otlp_endpoint=str(args.otlp_endpoint or "").rstrip("/"),
        max_concurrent_streams=int(args.max_concurrent_streams),
        keepalive_time_s=float(args.keepalive_time),
        keepalive_timeout_s=float(args.keepalive_timeout),
        keepalive_permit_without_calls=not args.keepalive_require_calls,
        min_ping_interval_s=float(args.min_ping_interval),
        provider_keys=provider_keys(args),
        provider_base_urls=provider_base_urls(args),
        provider_connect_timeout_s=float(args.provider_connect_timeout),
        provider_read_timeout_s=float(args.provider_read_timeout),
        breaker_failures=int(args.breaker_failures),
        breaker_cooldown_s=float(args.breaker_cooldown),
        health_sync_s=max(0.0, float(args.health_sync_interval)),
    )


def parse_serve_args(argv: Sequence[str], environ: Mapping[str, str]) -> Settings:
    """Settings from a ``serve`` command line and the environment."""
    parser = argparse.ArgumentParser(prog="switchboard serve")
    add_serve_arguments(parser, environ)
    return settings_from_args(parser.parse_args(list(argv)))
