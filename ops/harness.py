"""Processes for the chaos suite and the loopback cluster: a restartable PostgreSQL and Redis and
`switchboard serve` replicas on fixed loopback ports, so a restarted process comes back where its
clients left it. Everything binds 127.0.0.1 and every wait is bounded."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

SWITCHBOARD = Path(sys.executable).with_name("switchboard")
T = TypeVar("T")


def in_workdir(prefix: str, out: Path, body: Callable[[Path], T]) -> T:
    """Run ``body`` in a fresh temporary directory (readable by the postgres user) and keep the
    logs it leaves there in ``out``, even when it fails."""
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        workdir = Path(tmp)
        os.chmod(workdir, 0o755)
        try:
            return body(workdir)
        finally:
            for log in workdir.glob("*.log"):
                (out / log.name).write_bytes(log.read_bytes())


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:port."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.3):
            return True
    except OSError:
        return False


def wait_for(what: str, ready: object, within: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Poll ``ready()`` until true; raise after ``within`` seconds or when ``proc`` exits."""
    assert callable(ready)
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        if ready():
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} not ready within {within} s")


def _stop(proc: subprocess.Popen[bytes] | None, sig: int, within: float = 20) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout=within)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


class Postgres:
    """A throwaway PostgreSQL cluster that can be stopped and started again on the same port."""

    def __init__(self, workdir: Path) -> None:
        bindirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
        if not bindirs:
            raise RuntimeError("PostgreSQL is not installed; run `make services`")
        self.bindir = bindirs[-1]
        self.data = tempfile.mkdtemp(prefix="sb-pg-", dir=workdir)
        self.port = free_port()
        self.dsn = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self.proc: subprocess.Popen[bytes] | None = None
        if os.geteuid() == 0:
            shutil.chown(workdir, "postgres", "postgres")
            shutil.chown(self.data, "postgres", "postgres")
        self._run([f"{self.bindir}/initdb", "-D", self.data, "-A", "trust", "-U", "postgres", "--no-sync"])

    def _as_postgres(self, cmd: list[str]) -> list[str]:
        # PostgreSQL refuses to run as root; run it as the postgres user then.
        return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd

    def _run(self, cmd: list[str]) -> None:
        subprocess.run(self._as_postgres(cmd), check=True, capture_output=True)

    def start(self) -> None:
        settings = ["listen_addresses=127.0.0.1", "fsync=off", "synchronous_commit=off", "max_connections=300"]
        args = [f"{self.bindir}/postgres", "-D", self.data, "-p", str(self.port), "-k", self.data]
        for setting in settings:
            args += ["-c", setting]
        self.proc = subprocess.Popen(self._as_postgres(args), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for("postgres", lambda: port_open(self.port), 30, self.proc)
        import psycopg  # noqa: PLC0415  (only the harness needs it, and only here)

        def accepts() -> bool:
            try:
                with psycopg.connect(self.dsn, connect_timeout=2):
                    return True
            except psycopg.OperationalError:
                return False

        wait_for("postgres connections", accepts, 30, self.proc)

    def stop(self) -> None:
        """Fast shutdown: open sessions are disconnected, like a database failover. (pg_ctl signals
        the postmaster itself: runuser, its parent here, does not pass SIGINT on.)"""
        if self.proc is None or self.proc.poll() is not None:
            return
        self._run([f"{self.bindir}/pg_ctl", "stop", "-D", self.data, "-m", "fast", "-w", "-t", "20"])
        _stop(self.proc, signal.SIGTERM)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.data, ignore_errors=True)


class Redis:
    """A Redis with no persistence that can be stopped and started again on the same port (empty)."""

    def __init__(self) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server is not installed; run `make services`")
        self.exe = exe
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        args = [self.exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for("redis-server", lambda: port_open(self.port), 30, self.proc)

    def stop(self) -> None:
        _stop(self.proc, signal.SIGTERM)

    def close(self) -> None:
        self.stop()


def health_status(target: str, service: str = "", timeout: float = 1.0) -> str:
    """The gRPC health status name of ``service`` at ``target``, or the error code's name."""
    with grpc.insecure_channel(target) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout
            )
        except grpc.RpcError as exc:
            return str(exc.code().name)
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


class Replica:
    """One `switchboard serve` on a fixed loopback port; output appended to ``<workdir>/<name>.log``."""

    def __init__(self, workdir: Path, name: str, args: list[str], env: dict[str, str] | None = None) -> None:
        self.name = name
        self.port = free_port()
        self.target = f"127.0.0.1:{self.port}"
        self.args = args
        self.env = env or {}
        self.log_path = workdir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, extra: list[str] | None = None, within: float = 60) -> None:
        with self.log_path.open("a") as log:
            self.proc = subprocess.Popen(
                [str(SWITCHBOARD), "serve", "--listen", self.target, *self.args, *(extra or [])],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.env},
            )
        wait_for(f"replica {self.name}", lambda: health_status(self.target) == "SERVING", within, self.proc)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def serving(self) -> bool:
        return self.alive() and health_status(self.target) == "SERVING"

    def workers(self) -> list[int]:
        """The worker processes of a `--workers N` replica (children of its supervisor)."""
        if not self.alive():
            return []
        pids: list[int] = []
        for path in glob.glob(f"/proc/{self.pid}/task/*/children"):
            pids += [int(p) for p in Path(path).read_text().split()]
        return pids

    def signal(self, sig: int) -> None:
        if self.alive():
            os.kill(self.pid, sig)

    def kill9(self) -> None:
        """kill -9 of the supervisor and of its workers, as a lost machine would lose them."""
        workers = self.workers()
        self.signal(signal.SIGKILL)
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(timeout=10)

    def stop(self, within: float = 60) -> int | None:
        """SIGTERM and wait (the replica drains for its --grace); the exit code."""
        _stop(self.proc, signal.SIGTERM, within)
        return None if self.proc is None else self.proc.returncode

    def log_tail(self, lines: int = 20) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])
