"""Builds and runs the gRPC server: RouterService, health, reflection, API keys, TLS, metrics,
graceful shutdown (SIGTERM) and reload (SIGHUP)."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import ipaddress
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from prometheus_client import multiprocess

from switchboard.app import App, build_app, start_facts
from switchboard.billing import sweep_forever
from switchboard.catalog import load_catalog
from switchboard.errors import ConfigError
from switchboard.logs import configure_logging
from switchboard.metrics import Metrics, serve_workers
from switchboard.reflection import enable_reflection
from switchboard.rpc import Guard, add_service
from switchboard.service import AccountService, RouterService
from switchboard.settings import Settings
from switchboard.stores import open_store
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


def check_tls_files(cert: str, key: str, client_ca: str = "") -> None:
    """Parse the TLS files as the server will use them: a certificate chain, its private key (which
    must match it) and a CA bundle. A problem is a ConfigError naming the file and what is wrong,
    rather than gRPC's bare "Failed to bind" later."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    for path, what in ((cert, "--tls-cert"), (client_ca, "--tls-client-ca")):
        if not path:
            continue
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=path)
        except (ssl.SSLError, ValueError) as exc:
            raise ConfigError(f"{what} {path}: not a PEM certificate ({_ssl_reason(exc)})") from None
    try:
        ctx.load_cert_chain(certfile=cert, keyfile=key)
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise ConfigError(f"--tls-key {key}: the private key does not match the certificate {cert}") from None
        raise ConfigError(f"--tls-key {key}: not a PEM private key ({_ssl_reason(exc)})") from None


def _ssl_reason(exc: Exception) -> str:
    reason = getattr(exc, "reason", None)
    return str(reason).lower().replace("_", " ") if reason else str(exc)


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
    key, cert = _read(settings.tls_key), _read(settings.tls_cert)
    check_tls_files(settings.tls_cert, settings.tls_key, settings.tls_client_ca or "")
    return grpc.ssl_server_credentials(
        [(key, cert)],
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
        if grace:
            # Streams still running when the grace ends are cut by the server itself, so they end
            # with SERVER_SHUTTING_DOWN and are not charged; gRPC's own cancellation comes later.
            stopping = asyncio.ensure_future(self.server.stop(grace + _SETTLE_S))
            done, _ = await asyncio.wait({stopping}, timeout=grace)
            if not done:
                cut = self.app.billing.cut()
                if cut:
                    log.warning("streams_cut", streams=cut, grace_s=grace)
            await stopping
        else:
            self.app.billing.cut()
            await self.server.stop(grace)
        self.sweeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.sweeper
        self.metrics.stop()
        await self.app.shutdown()


_SETTLE_S = 5.0
"""How long streams cut at the end of the shutdown grace get to settle before gRPC cancels them."""
MODEL_HEALTH_PREFIX = "switchboard.model/"
"""Health-service names of the models: ``switchboard.model/<model id>``."""
_BACKGROUND: set[asyncio.Task[None]] = set()


def _background(work: Coroutine[Any, Any, None], loop: asyncio.AbstractEventLoop | None = None) -> None:
    """Run ``work`` as a task (on ``loop``, else the running one) kept referenced until it ends."""
    task = (loop or asyncio.get_running_loop()).create_task(work)
    _BACKGROUND.add(task)
    task.add_done_callback(_BACKGROUND.discard)


async def report_model_health(app: App, servicer: health.aio.HealthServicer) -> None:
    """Publish every model as SERVING, then follow model health (shared by every process when a
    shared store is in use): NOT_SERVING from the start of a cool-down until the model next
    succeeds. Starts the health's background work."""
    for model in app.catalog.models:
        await servicer.set(MODEL_HEALTH_PREFIX + model.id, health_pb2.HealthCheckResponse.SERVING)
    loop = asyncio.get_running_loop()

    def changed(model_id: str, serving: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        _background(servicer.set(MODEL_HEALTH_PREFIX + model_id, status), loop)

    app.health.on_change = changed
    app.health.start()


def report_ledger_health(app: App, servicer: health.aio.HealthServicer) -> None:
    """The server and its services are NOT_SERVING while the ledger is unreachable, SERVING again
    when it answers (the sweeper asks every --sweep-interval, so recovery needs no traffic)."""
    loop = asyncio.get_running_loop()

    def changed(available: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if available else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ("", *SERVICE_NAMES):
            _background(servicer.set(name, status), loop)

    app.ledger.outage.listeners.append(changed)


async def create_server(settings: Settings, app: App | None = None) -> ServerHandle:
    """Build the app from ``settings`` (or use ``app``), bind, start and return the server
    (port 0 picks a port)."""
    app = app or build_app(settings)
    check_open_access(settings, app)
    credentials = server_credentials(settings)
    holder: list[ServerHandle] = []

    def current() -> App:
        return holder[0].app if holder else app

    metrics = Metrics(lambda: (current().health, current().catalog.models), worker=settings.metrics_dir is not None)
    server = grpc.aio.server(options=server_options(settings))
    guard = Guard(lambda: current().keys, metrics, app.tracing.tracer if app.tracing else None)
    router, accounts = RouterService(app), AccountService(app)
    add_service(server, router_pb2.DESCRIPTOR.services_by_name["RouterService"], router, guard)
    add_service(server, accounts_pb2.DESCRIPTOR.services_by_name["AccountService"], accounts, guard)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    enable_reflection((*SERVICE_NAMES, health.SERVICE_NAME), server)
    if not settings.reuse_port:
        check_port_free(settings.listen)
    try:
        if credentials is None:
            port = server.add_insecure_port(settings.listen)
        else:
            port = server.add_secure_port(settings.listen, credentials)
    except RuntimeError:
        port = 0
    if port == 0:
        raise ConfigError(f"--listen {settings.listen}: cannot listen there (is the address in use?)")
    metrics_port = metrics.serve(settings.metrics_listen) if settings.metrics_listen else None
    instance = instance_id(settings)
    if instance:
        incarnation, released = await app.ledger.begin_incarnation(instance)
        log.info("incarnation", instance_id=instance, incarnation=incarnation, holds_released=released)
    await server.start()
    for name in ("", *SERVICE_NAMES):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    await report_model_health(app, health_servicer)
    report_ledger_health(app, health_servicer)
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


def log_start_notices(settings: Settings, api_keys: int, simulated: list[str]) -> None:
    """The start-up notices a person must see once: how callers are authenticated, and which
    models the built-in simulator answers."""
    if api_keys:
        log.info("auth", mode="api_keys", api_keys=api_keys)
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
    if not settings.supervised:  # with --workers N the supervisor prints them once
        log_start_notices(settings, len(handle.app.keys), simulated)
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


def worker_metrics(settings: Settings, tmp: str) -> tuple[dict[str, str] | None, list[str]]:
    """One ``/metrics`` for all workers, when metrics are on: serve it from this process (a
    daemon thread, for the supervisor's lifetime) out of a directory in ``tmp`` that the workers
    write their values to. Returns the workers' environment (None: inherit) and extra arguments."""
    if not settings.metrics_listen:
        return None, []
    directory = Path(tmp) / "metrics"
    directory.mkdir()
    _, port = serve_workers(settings.metrics_listen, str(directory))
    log.info("metrics_serving", port=port, workers=settings.workers)
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    return env, ["--metrics-listen", "", "--metrics-dir", str(directory)]


def instance_id(settings: Settings) -> str:
    """This server's name across restarts: ``--instance-id``, else host name and port when the
    port is fixed; "" (nothing to reclaim) for port 0."""
    if settings.instance_id:
        return settings.instance_id
    port = settings.listen.rpartition(":")[2]
    return f"{socket.gethostname()}:{port}" if port.isdigit() and int(port) else ""


def check_port_free(listen: str) -> None:
    """Bind ``listen`` (HOST:PORT) without SO_REUSEPORT and let go: a ConfigError saying the
    address is in use when anything listens there already, another Switchboard included. Only
    one supervisor's own workers share a port."""
    host, _, port_text = listen.rpartition(":")
    host = host.strip("[]")
    if not port_text.isdigit() or int(port_text) == 0:
        return
    try:
        infos = socket.getaddrinfo(host or None, int(port_text), type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(f"--listen {listen}: {exc.strerror}") from None
    for family, kind, proto, _, address in infos:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is no listener
            try:
                probe.bind(address)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise ConfigError(f"--listen {listen}: the address is in use") from None
                raise ConfigError(f"--listen {listen}: cannot bind ({exc.strerror})") from None


def _lock_port(host: str, port: int) -> IO[bytes]:
    """Hold an exclusive lock named after ``host:port`` for the supervisor's life, so a second
    supervisor started at the same moment (before either has workers listening, which is what
    ``check_port_free`` sees) is refused too."""
    name = f"switchboard-{host.strip('[]') or 'any'}-{port}.lock".replace(":", "_").replace("/", "_")
    handle = (Path(tempfile.gettempdir()) / name).open("ab")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise ConfigError(f"--listen {host}:{port}: the address is in use (another supervisor holds it)") from None
    return handle


CRASH_LOOP_DEATHS = 5
"""A worker dying this many times within ``CRASH_LOOP_WINDOW_S`` is a crash loop: the supervisor
stops the others and exits 1 instead of restarting it again."""
CRASH_LOOP_WINDOW_S = 60.0


def restart_delay(recent_deaths: int) -> float:
    """Back-off before restarting a worker that died for the ``recent_deaths``-th time within the
    crash-loop window: 0.5 s, doubling, at most 10 s."""
    return float(min(10.0, 0.5 * 2 ** max(0, recent_deaths - 1)))


def supervise(settings: Settings, argv: list[str]) -> int:
    """Run ``settings.workers`` server processes on one port (SO_REUSEPORT), restart a worker that
    dies (with back-off, logged) while the others keep serving, forward SIGTERM and SIGINT to
    them, and wait. Gives up only on a crash loop. Returns the exit status."""
    configure_logging(settings.log_format, settings.log_level)
    load_catalog(settings.config_path)  # a bad config stops start-up here, before any worker starts
    open_store(settings.ledger, 1).close()  # so does a ledger schema newer than this build; else it is migrated once
    if settings.tls_cert or settings.tls_key:
        server_credentials(settings)  # so do bad TLS files
    log_start_notices(settings, *start_facts(settings))
    host, _, port_text = settings.listen.rpartition(":")
    port = int(port_text)
    if port == 0:
        with socket.socket(socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET) as s:
            s.bind((host.strip("[]") or "0.0.0.0", 0))
            port = s.getsockname()[1]
    port_lock = _lock_port(host, port)  # two supervisors starting at once: only one gets the port
    check_port_free(f"{host}:{port}")
    base_id = settings.instance_id or f"{socket.gethostname()}:{port}"
    # The in-process limiter would give each worker a limit of its own.
    limiter = "ledger" if settings.limiter == "memory" else settings.limiter
    with tempfile.TemporaryDirectory(prefix="switchboard-workers-") as tmp:
        env, metrics_args = worker_metrics(settings, tmp)

        def command(i: int) -> list[str]:
            return [
                sys.executable,
                "-m",
                "switchboard.cli",
                "serve",
                *argv,
                "--workers",
                "1",
                "--reuse-port",
                "--supervised",
                "--listen",
                f"{host}:{port}",
                "--limiter",
                limiter,
                "--port-file",
                f"{tmp}/worker-{i}",
                "--instance-id",
                f"{base_id}/w{i}",
                *metrics_args,
            ]

        children = [subprocess.Popen(command(i), env=env) for i in range(settings.workers)]
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
        crash_loop = False

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
        deaths: list[float] = []
        restart_at: dict[int, float] = {}
        while any(c.poll() is None for c in children) or (restart_at and not stopping):
            now = time.monotonic()
            for i, c in enumerate(children):
                if stopping or crash_loop or c.returncode is None or i in restart_at:
                    continue
                deaths.append(now)
                deaths[:] = [t for t in deaths if now - t < CRASH_LOOP_WINDOW_S]
                if len(deaths) >= CRASH_LOOP_DEATHS:
                    log.error(
                        "worker_crash_loop",
                        deaths=len(deaths),
                        window_s=CRASH_LOOP_WINDOW_S,
                        message="workers keep dying; stopping the others",
                    )
                    crash_loop = True
                    forward(signal.SIGTERM, None)
                    break
                if env is not None:  # its gauges leave the one /metrics with it
                    multiprocess.mark_process_dead(c.pid, env["PROMETHEUS_MULTIPROC_DIR"])
                delay = restart_delay(len(deaths))
                log.error("worker_exited", worker=i, pid=c.pid, code=c.returncode, restart_in_s=delay)
                restart_at[i] = now + delay
            for i, when in list(restart_at.items()):
                if stopping or crash_loop:
                    restart_at.clear()
                    break
                if now >= when:
                    del restart_at[i]
                    children[i] = subprocess.Popen(command(i), env=env)
                    log.info("worker_restarted", worker=i, pid=children[i].pid)
            time.sleep(0.1)
        port_lock.close()
        # A worker still starting when the signal came dies of it before its handler is set: clean too.
        clean = (0, -signal.SIGTERM, -signal.SIGINT)
        return 0 if stopping and not crash_loop and all(c.returncode in clean for c in children) else 1
