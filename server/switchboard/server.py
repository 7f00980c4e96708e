"""Builds and runs the gRPC server: RouterService, health, reflection, graceful shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from switchboard.app import App, build_app
from switchboard.billing import sweep_forever
from switchboard.catalog import load_catalog
from switchboard.interceptors import RpcInterceptor
from switchboard.logs import configure_logging
from switchboard.reflection import enable_reflection
from switchboard.service import AccountService, RouterService
from switchboard.settings import Settings
from switchboard.v1 import accounts_pb2, accounts_pb2_grpc, router_pb2, router_pb2_grpc

log = structlog.get_logger("switchboard")

SERVICE_NAMES = (
    router_pb2.DESCRIPTOR.services_by_name["RouterService"].full_name,
    accounts_pb2.DESCRIPTOR.services_by_name["AccountService"].full_name,
)


@dataclass
class ServerHandle:
    """A started server: the gRPC server, the port it bound and the app behind it."""

    server: grpc.aio.Server
    port: int
    app: App
    health: health.aio.HealthServicer
    sweeper: asyncio.Task[None]

    async def stop(self, grace: float | None = None) -> None:
        """Report NOT_SERVING, stop taking calls and give running ones ``grace`` seconds; streams
        still running then are cancelled, which settles their credits and returns their slots."""
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)
        self.sweeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.sweeper
        await self.app.close()


async def create_server(settings: Settings, app: App | None = None) -> ServerHandle:
    """Build the app from ``settings`` (or use ``app``), bind, start and return the server
    (port 0 picks a port)."""
    app = app or build_app(settings)
    options = [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
        ("grpc.so_reuseport", 1 if settings.reuse_port else 0),
    ]
    server = grpc.aio.server(interceptors=[RpcInterceptor()], options=options)
    router_pb2_grpc.add_RouterServiceServicer_to_server(RouterService(app), server)
    accounts_pb2_grpc.add_AccountServiceServicer_to_server(AccountService(app), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    enable_reflection((*SERVICE_NAMES, health.SERVICE_NAME), server)
    port = server.add_insecure_port(settings.listen)
    if port == 0:
        raise OSError(f"cannot listen on {settings.listen}")
    await server.start()
    for name in ("", *SERVICE_NAMES):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    sweeper = asyncio.create_task(sweep_forever(app.ledger, settings.sweep_interval_s))
    return ServerHandle(server=server, port=port, app=app, health=health_servicer, sweeper=sweeper)


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
    await stop.wait()
    log.info("shutting_down", grace_s=settings.grace_s)
    await handle.stop(settings.grace_s)
    log.info("stopped")


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

        signal.signal(signal.SIGTERM, forward)
        signal.signal(signal.SIGINT, forward)
        while any(c.poll() is None for c in children):
            if not stopping and any(c.poll() is not None for c in children):
                log.error("worker_exited", codes=[c.poll() for c in children])
                forward(signal.SIGTERM, None)
            time.sleep(0.1)
        return 0 if stopping and all(c.returncode == 0 for c in children) else 1
