"""`switchboard serve` as a subprocess on a free loopback port, for end-to-end tests."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).with_name("switchboard")


class ServerProcess:
    """A running `switchboard serve`; its output goes to ``<tmp>/<name>.log``."""

    def __init__(self, tmp: Path, name: str, *args: str) -> None:
        port_file = tmp / f"{name}.port"
        self.log_path = tmp / f"{name}.log"
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            [str(BIN), "serve", "--listen", "127.0.0.1:0", "--port-file", str(port_file), *args],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().strip()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()
                raise RuntimeError(f"server did not start: {self.log_path.read_text()}")
            time.sleep(0.05)
        self.port = int(port_file.read_text())
        self.target = f"127.0.0.1:{self.port}"

    def stop(self, sig: int = signal.SIGTERM) -> str:
        """Signal the server, wait for it, and return its output."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()
        return self.log_path.read_text()
