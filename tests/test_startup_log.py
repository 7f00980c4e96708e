"""Start-up output as a person sees it: the notices once for all workers, the console format on a
terminal, JSON lines otherwise and whenever asked."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import time
from pathlib import Path

from procs import BIN


def serve(tmp: Path, *args: str, terminal: bool) -> str:
    """Run `switchboard serve --workers 2` until every worker serves, stop it, return its output."""
    port_file = tmp / "port"
    cmd = [str(BIN), "serve", "--workers", "2", "--listen", "127.0.0.1:0", "--port-file", str(port_file)]
    cmd += ["--ledger", f"sqlite:{tmp / 'ledger.db'}", *args]
    if terminal:
        leader, follower = pty.openpty()
        proc = subprocess.Popen(cmd, stdin=follower, stdout=follower, stderr=follower)
        os.close(follower)
    else:
        out = (tmp / "out.log").open("w")
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    chunks: list[bytes] = []
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and not port_file.exists():
            if terminal and select.select([leader], [], [], 0.1)[0]:
                chunks.append(os.read(leader, 65536))
            elif not terminal:
                time.sleep(0.1)
        assert port_file.exists(), "the server did not start"
        time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGTERM)
        end = time.monotonic() + 30
        while proc.poll() is None and time.monotonic() < end:
            if terminal and select.select([leader], [], [], 0.1)[0]:
                try:
                    chunks.append(os.read(leader, 65536))
                except OSError:
                    break
            elif not terminal:
                time.sleep(0.1)
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
    if terminal:
        while select.select([leader], [], [], 0.2)[0]:
            try:
                data = os.read(leader, 65536)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
        os.close(leader)
        return b"".join(chunks).decode(errors="replace")
    out.close()
    return (tmp / "out.log").read_text()


def events(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


class TestNotices:
    """The open-mode warning and the list of simulated models print once, not once per worker."""

    def test_once_with_two_workers(self, tmp_path: Path) -> None:
        """Two workers, JSON to a file: one auth event, one simulated_provider event, two serving events."""
        lines = events(serve(tmp_path, terminal=False))
        names = [e["event"] for e in lines]
        assert names.count("serving") == 2
        assert names.count("auth") == 1
        assert names.count("simulated_provider") == 1
        (sim,) = (e for e in lines if e["event"] == "simulated_provider")
        assert isinstance(sim["models"], list)
        assert len(sim["models"]) == 28


class TestFormat:
    """Console on a terminal, JSON lines otherwise, JSON on a terminal when asked."""

    def test_terminal_gets_console_lines(self, tmp_path: Path) -> None:
        """On a pty the lines are the console rendering, not JSON, and the notice still prints once."""
        text = re.sub(r"\x1b\[[0-9;]*m", "", serve(tmp_path, terminal=True))  # without the colours
        assert "serving" in text
        assert not events(text), text
        assert text.count("simulated_provider") == 1
        assert text.count("mode=open") == 1, text

    def test_json_on_a_terminal_when_asked(self, tmp_path: Path) -> None:
        """--log-format json on a pty writes JSON lines."""
        text = serve(tmp_path, "--log-format", "json", terminal=True)
        names = [e["event"] for e in events(text.replace("\r\n", "\n"))]
        assert names.count("serving") == 2
        assert names.count("simulated_provider") == 1
