"""Builds and runs the gRPC server: RouterService, health, reflection, API keys, TLS, metrics,
graceful shutdown (SIGTERM) and reload (SIGHUP)."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from switchboard.app import App, build_app
from switchboard.billing import sweep_forever
from switchboard.catalog import load_catalog
from switchboard.errors import ConfigError
from switchboard.health import CircuitBreaker
from switchboard.logs import configure_logging
from switchboard.metrics import Metrics
from switchboard.reflection import enable_reflection
from switchboard.rpc import Guard, add_service
from switchboard.service import AccountService, RouterService
from switchboard.settings import Settings
from switchboard.types import Provider
from switchboard.v1 import accounts_pb2, router_pb2

log = structlog.get_logger("switchboard")

SERVICE_NAMES = (
    router_pb2.DESCRIPTOR.services_by_name["RouterService"].full_name,
    accounts_pb2.DESCRIPTOR.services_by_name["AccountService"].full_name,
)


def is_loopback(listen: str) -> bool:
    """True when ``listen`` (HOST:PORT) binds a loopback address only."""
    host = listen.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_open_access(settings: Settings, app: App) -> None:
    """Refuse to serve without API keys on a non-loopback address unless the settings allow it."""
    if app.keys.enabled or settings.allow_unauthenticated or is_loopback(settings.listen):
        return
    raise ConfigError(
        f"refusing to serve without API keys on {settings.listen}: add api_keys to the config "
        "(see `switchboard keys new`) or pass --allow-unauthenticated"
    )


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from exc


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """TLS credentials from the settings' PEM files (client certificates required when a client CA
    is given), or None for plaintext."""
    if not settings.tls_cert and not settings.tls_key:
        if settings.tls_client_ca:
            raise ConfigError("--tls-client-ca needs --tls-cert and --tls-key")
        return None
    if not (settings.tls_cert and settings.tls_key):
        raise ConfigError("TLS needs both --tls-cert and --tls-key")
    ca = _read(settings.tls_client_ca) if settings.tls_client_ca else None
    return grpc.ssl_server_credentials(
        [(_read(settings.tls_key), _read(settings.tls_cert))],
        root_certificates=ca,
        require_client_auth=ca is not None,
    )


def server_options(settings: Settings) -> list[tuple[str, int]]:
    """Channel arguments: message size, concurrent streams per connection and keepalive policy."""
    return [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
        ("grpc.so_reuseport", 1 if settings.reuse_port else 0),
        ("grpc.max_concurrent_streams", settings.max_concurrent_streams),
        ("grpc.keepalive_time_ms", round(settings.keepalive_time_s * 1000)),
        ("grpc.keepalive_timeout_ms", round(settings.keepalive_timeout_s * 1000)),
        ("grpc.keepalive_permit_without_calls", int(settings.keepalive_permit_without_calls)),
        ("grpc.http2.min_recv_ping_interval_without_data_ms", round(settings.min_ping_interval_s * 1000)),
        ("grpc.http2.min_ping_interval_without_data_ms", round(settings.min_ping_interval_s * 1000)),
        ("grpc.http2.max_ping_strikes", 2),
    ]


@dataclass
class ServerHandle:
    """A started server: the gRPC server, the port it bound and the app behind it.

    ``app`` is the app new calls use; ``reload()`` replaces it while calls in flight finish on the
    one they started with.
    """

    server: grpc.aio.Server
    port: int
    app: App
    health: health.aio.HealthServicer
    sweeper: asyncio.Task[None]
    metrics: Metrics
    metrics_port: int | None = None
    servicers: list[RouterService | AccountService] = field(default_factory=list)

    def swap(self, app: App) -> None:
        """Make ``app`` the one new calls use."""
        self.app = app
        for servicer in self.servicers:
            servicer.app = app

    def reload(self, adapters: Mapping[str, Provider] | None = None) -> bool:
        """Build a new app from the config file (catalog, plans, prices, keys) and swap it in.
        A bad config is refused with a log line saying why, and the running app is kept."""
        current = self.app
        try:
            app = build_app(current.settings, adapters, reuse=current)
            check_open_access(current.settings, app)
        except ConfigError as exc:
            log.error("reload_refused", reason=str(exc), config=current.settings.config_path)
            return False
        except Exception as exc:  # a reload must never take the running server down
            log.exception("reload_refused", reason=repr(exc), config=current.settings.config_path)
            return False
        self.swap(app)
        _background(current.retire(app))
        log.info("reloaded", models=len(app.catalog.models), plans=len(app.catalog.plans), api_keys=len(app.keys))
        return True

    async def stop(self, grace: float | None = None) -> None:
        """Report NOT_SERVING, stop taking calls and give running ones ``grace`` seconds; streams
        still running then are cancelled, which closes their provider calls, settles their credits
        and returns their slots. Then run the app's ``on_shutdown`` callbacks and close it."""
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)
        self.sweeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.sweeper
        self.metrics.stop()
        await self.app.shutdown()


MODEL_HEALTH_PREFIX = "switchboard.model/"
"""Health-service names of the models: ``switchboard.model/<model id>``."""
_BACKGROUND: set[asyncio.Task[None]] = set()


def _background(work: Coroutine[Any, Any, None], loop: asyncio.AbstractEventLoop | None = None) -> None:
    """Run ``work`` as a task (on ``loop``, else the running one) kept referenced until it ends."""
    task = (loop or asyncio.get_running_loop()).create_task(work)
    _BACKGROUND.add(task)
    task.add_done_callback(_BACKGROUND.discard)


async def report_model_health(app: App, servicer: health.aio.HealthServicer) -> None:
    """Publish every model as SERVING, then follow the circuit breaker: NOT_SERVING from the start
    of a cool-down until the model next succeeds."""
    for model in app.catalog.models:
        await servicer.set(MODEL_HEALTH_PREFIX + model.id, health_pb2.HealthCheckResponse.SERVING)
    if not isinstance(app.health, CircuitBreaker):
        return
    loop = asyncio.get_running_loop()

    def changed(model_id: str, serving: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        _background(servicer.set(MODEL_HEALTH_PREFIX + model_id, status), loop)

    app.health.on_change = changed


async def create_server(settings: Settings, app: App | None = None) -> ServerHandle:
    """Build the app from ``settings`` (or use ``app``), bind, start and return the server
    (port 0 picks a port)."""
    app = app or build_app(settings)
    check_open_access(settings, app)
    credentials = server_credentials(settings)
    holder: list[ServerHandle] = []

    def current() -> App:
        return holder[0].app if holder else app

    metrics = Metrics(lambda: (current().health, current().catalog.models))
    server = grpc.aio.server(options=server_options(settings))
    guard = Guard(lambda: current().keys, metrics, app.tracing.tracer if app.tracing else None)
    router, accounts = RouterService(app), AccountService(app)
    add_service(server, router_pb2.DESCRIPTOR.services_by_name["RouterService"], router, guard)
    add_service(server, accounts_pb2.DESCRIPTOR.services_by_name["AccountService"], accounts, guard)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    enable_reflection((*SERVICE_NAMES, health.SERVICE_NAME), server)
    if credentials is None:
        port = server.add_insecure_port(settings.listen)
    else:
        port = server.add_secure_port(settings.listen, credentials)
    if port == 0:
        raise OSError(f"cannot listen on {settings.listen}")
    metrics_port = metrics.serve(settings.metrics_listen) if settings.metrics_listen else None
    await server.start()
    for name in ("", *SERVICE_NAMES):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    await report_model_health(app, health_servicer)
    sweeper = asyncio.create_task(sweep_forever(app.ledger, settings.sweep_interval_s))
    handle = ServerHandle(
        server=server,
        port=port,
        app=app,
        health=health_servicer,
        sweeper=sweeper,
        metrics=metrics,
        metrics_port=metrics_port,
        servicers=[router, accounts],
    )
    holder.append(handle)
    return handle


def run_loop(main: Coroutine[Any, Any, None], event_loop: str = "auto") -> None:
    """Run ``main`` on the chosen event loop: uvloop (``auto`` when it is installed) or asyncio's own."""
    if event_loop != "asyncio":
        try:
            import uvloop  # noqa: PLC0415 - optional: the asyncio loop is the fallback
        except ImportError:
            if event_loop == "uvloop":
                raise ConfigError("--event-loop uvloop: uvloop is not installed") from None
        else:
            uvloop.run(main)
            return
    asyncio.run(main)


async def serve(settings: Settings) -> None:
    """Run until SIGTERM or SIGINT, then shut down gracefully."""
    configure_logging(settings.log_format, settings.log_level)
    handle = await create_server(settings)
    simulated = handle.app.providers.simulated_model_ids
    log.info(
        "serving",
        listen=settings.listen,
        port=handle.port,
        pid=os.getpid(),
        models=len(handle.app.catalog.models),
        simulated_models=len(simulated),
        config=settings.config_path or "embedded default",
        tls="mutual" if settings.tls_client_ca else ("on" if settings.tls_cert else "off"),
        metrics_port=handle.metrics_port,
    )
    if handle.app.keys.enabled:
        log.info("auth", mode="api_keys", api_keys=len(handle.app.keys))
    else:
        log.warning(
            "auth",
            mode="open",
            message="the config lists no api_keys: every caller is allowed (only safe on loopback)",
            listen=settings.listen,
        )
    if simulated:
        log.warning(
            "simulated_provider",
            message="these models have no provider credentials and are answered by the built-in simulator",
            models=simulated,
        )
    if settings.port_file:
        Path(settings.port_file).write_text(f"{handle.port}\n", encoding="utf-8")  # noqa: ASYNC240 - once, at start-up
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, handle.reload)
    await stop.wait()
    loop.remove_signal_handler(signal.SIGHUP)
    log.info("shutting_down", grace_s=settings.grace_s)
    await handle.stop(settings.grace_s)
    log.info("stopped")


def _worker_metrics(listen: str | None, index: int) -> list[str]:
    """Worker ``index``'s metrics address: the given port plus the index (port 0 stays 0)."""
    if not listen:
        return []
    host, _, port = listen.rpartition(":")
    return ["--metrics-listen", f"{host}:{int(port) + index if int(port) else 0}"]


def supervise(settings: Settings, argv: list[str]) -> int:
    """Run ``settings.workers`` server processes on one port (SO_REUSEPORT), forward SIGTERM and
    SIGINT to them, and wait. Returns the exit status."""
    configure_logging(settings.log_format, settings.log_level)
    load_catalog(settings.config_path)  # a bad config stops start-up here, before any worker starts
    host, _, port_text = settings.listen.rpartition(":")
    port = int(port_text)
    if port == 0:
        with socket.socket(socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET) as s:
            s.bind((host.strip("[]") or "0.0.0.0", 0))
            port = s.getsockname()[1]
    # The in-process limiter would give each worker a limit of its own.
    limiter = "ledger" if settings.limiter == "memory" else settings.limiter
    with tempfile.TemporaryDirectory(prefix="switchboard-workers-") as tmp:
        children = []
        for i in range(settings.workers):
            cmd = [
                sys.executable,
                "-m",
                "switchboard.cli",
                "serve",
                *argv,
                "--workers",
                "1",
                "--reuse-port",
                "--listen",
                f"{host}:{port}",
                "--limiter",
                limiter,
                "--port-file",
                f"{tmp}/worker-{i}",
                *_worker_metrics(settings.metrics_listen, i),
            ]
            children.append(subprocess.Popen(cmd))
        deadline = time.monotonic() + 60
        while not all(Path(f"{tmp}/worker-{i}").exists() for i in range(settings.workers)):
            if any(c.poll() is not None for c in children) or time.monotonic() > deadline:
                log.error("worker_failed_to_start")
                for c in children:
                    c.terminate()
                return 1
            time.sleep(0.05)
        log.info("workers_serving", port=port, workers=settings.workers, pids=[c.pid for c in children])
        if settings.port_file:
            Path(settings.port_file).write_text(f"{port}\n", encoding="utf-8")
        stopping = False

        def forward(signum: int, _frame: object) -> None:
            nonlocal stopping
            stopping = True
            for c in children:
                if c.poll() is None:
                    c.send_signal(signum)

        def reload(signum: int, _frame: object) -> None:
            for c in children:
                if c.poll() is None:
                    c.send_signal(signum)

        signal.signal(signal.SIGTERM, forward)
        signal.signal(signal.SIGINT, forward)
        signal.signal(signal.SIGHUP, reload)
        while any(c.poll() is None for c in children):
            if not stopping and any(c.poll() is not None for c in children):
                log.error("worker_exited", codes=[c.poll() for c in children])
                forward(signal.SIGTERM, None)
            time.sleep(0.1)
        return 0 if stopping and all(c.returncode == 0 for c in children) else 1
