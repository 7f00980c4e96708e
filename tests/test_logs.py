"""The JSON log output: one line per event, gathered on the event loop and written by a thread,
louder events at once and in order, lines of several processes never mixed."""

from __future__ import annotations

import asyncio
import json
import os
import re
import threading
from pathlib import Path

import pytest
import structlog
from structlog.testing import capture_logs
from switchboard import logs


@pytest.fixture
def log_file(tmp_path: Path) -> Path:
    return tmp_path / "out.log"


def lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


class TestJsonLines:
    """Each event is one JSON line with its level and an ISO-8601 UTC timestamp."""

    async def test_event_fields_level_and_timestamp(self, log_file: Path) -> None:
        """The call's fields, the event's own, the level and the timestamp are on the line."""
        with log_file.open("w") as out:
            writer = logs.LineWriter(out)
            logs.open_call(rpc="SelectModel", request_id="r-1")
            event = logs.merge_call_fields(None, "info", {"event": "rpc", "status": "OK", "latency_ms": 1.5})
            writer.info(logs._render_json(None, "info", event))
            writer.flush()
        (line,) = lines(log_file)
        assert line["rpc"] == "SelectModel"
        assert line["request_id"] == "r-1"
        assert line["status"] == "OK"
        assert line["latency_ms"] == 1.5
        assert line["level"] == "info"
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", str(line["timestamp"]))

    def test_exception_is_rendered_as_text(self, log_file: Path) -> None:
        """An event logged with exc_info carries the traceback as text, not an object."""
        try:
            raise ValueError("boom")
        except ValueError:
            rendered = logs._render_json(None, "exception", {"event": "unexpected_error", "exc_info": True})
        line = json.loads(rendered)
        assert line["level"] == "error"
        assert "ValueError: boom" in line["exception"]

    def test_values_json_cannot_hold_are_written_as_repr(self) -> None:
        """A value orjson cannot serialize is written as its repr rather than failing the call."""
        line = json.loads(logs._render_json(None, "info", {"event": "x", "odd": {1, 2}.__class__}))
        assert line["odd"] == "<class 'set'>"


class TestWriting:
    """Info lines on a loop are gathered; louder lines and lines off a loop go out at once."""

    async def test_info_lines_are_written_within_the_flush_interval(self, log_file: Path) -> None:
        """Info lines on the loop are not written at once, then all arrive after FLUSH_S."""
        with log_file.open("w") as out:
            writer = logs.LineWriter(out)
            for i in range(3):
                writer.info(logs._render_json(None, "info", {"event": "rpc", "i": i}))
            assert log_file.read_text() == ""  # noqa: ASYNC240 - a small file in a test
            for _ in range(100):
                await asyncio.sleep(logs.FLUSH_S)
                if len(log_file.read_text().splitlines()) == 3:  # noqa: ASYNC240 - a small file in a test
                    break
            assert [line["i"] for line in lines(log_file)] == [0, 1, 2]
            writer.flush()

    async def test_warning_is_written_at_once_after_earlier_lines(self, log_file: Path) -> None:
        """A warning goes out at once, after the info lines gathered before it."""
        with log_file.open("w") as out:
            writer = logs.LineWriter(out)
            writer.info(logs._render_json(None, "info", {"event": "first"}))
            writer.warning(logs._render_json(None, "warning", {"event": "second"}))
            assert [line["event"] for line in lines(log_file)] == ["first", "second"]
            writer.flush()

    def test_off_a_loop_lines_are_written_at_once(self, log_file: Path) -> None:
        """Without a running event loop an info line is written before the call returns."""
        with log_file.open("w") as out:
            writer = logs.LineWriter(out)
            writer.info(logs._render_json(None, "info", {"event": "now"}))
            assert [line["event"] for line in lines(log_file)] == ["now"]

    async def test_a_full_batch_is_handed_over_without_waiting(self, log_file: Path) -> None:
        """FLUSH_LINES lines are handed to the writer thread at once; flush writes the rest."""
        n = logs.FLUSH_LINES + 5
        with log_file.open("w") as out:
            writer = logs.LineWriter(out)
            for i in range(n):
                writer.info(logs._render_json(None, "info", {"event": "rpc", "i": i}))
            writer.flush()
        assert [line["i"] for line in lines(log_file)] == list(range(n))

    def test_batches_are_cut_at_line_ends_within_pipe_buf(self) -> None:
        """Each write of a batch is whole lines of at most PIPE_BUF bytes, so lines of workers
        sharing a pipe never mix; a longer line goes alone."""
        line = b"x" * 1000 + b"\n"
        long = b"y" * (logs.PIPE_BUF + 10) + b"\n"
        pieces = logs._chunks(line * 9 + long + line)
        assert b"".join(pieces) == line * 9 + long + line
        assert all(p.endswith(b"\n") for p in pieces)
        assert all(len(p) <= logs.PIPE_BUF for p in pieces if p != long)
        assert long in pieces

    def test_lines_through_a_pipe_arrive_whole(self) -> None:
        """Through a real pipe, read as it is written, every line arrives whole and in order."""
        read_fd, write_fd = os.pipe()
        got: list[int] = []
        with os.fdopen(read_fd, "rb") as src:
            reader = threading.Thread(target=lambda: got.extend(json.loads(raw)["i"] for raw in src))
            reader.start()
            with os.fdopen(write_fd, "w") as out:

                async def burst() -> None:
                    writer = logs.LineWriter(out)
                    for i in range(2000):
                        writer.info(logs._render_json(None, "info", {"event": "rpc", "i": i, "pad": "p" * 50}))
                    writer.flush()

                asyncio.run(burst())
            reader.join(timeout=30)
        assert got == list(range(2000))


class TestConfigure:
    """configure_logging binds the per-call event's logger once; tests that capture see events."""

    def test_bound_logger_writes_through_the_configured_chain(
        self, log_file: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """After configure_logging the per-call logger renders JSON through the line writer."""
        with log_file.open("w") as out:
            monkeypatch.setattr("sys.stdout", out)
            try:
                logs.configure_logging("json", "info")
                logs.event_logger().info("rpc", status="OK")
                logs.event_logger().debug("hidden")
                logs.call_event({"rpc": "Generate", "status": "CANCELLED", "event": "rpc"})
                logs.flush()
            finally:
                structlog.reset_defaults()
                logs._BOUND[0] = logs._FAST[0] = None
        first, second = lines(log_file)
        assert first["event"] == "rpc"
        assert first["status"] == "OK"
        assert (second["rpc"], second["status"], second["level"]) == ("Generate", "CANCELLED", "info")

    def test_call_event_is_captured_when_not_configured(self) -> None:
        """Without configure_logging the per-call event goes through structlog, so tests capture it."""
        with capture_logs() as captured:
            logs.call_event({"rpc": "SelectModel", "status": "OK", "event": "rpc"})
        assert captured == [{"rpc": "SelectModel", "status": "OK", "event": "rpc", "log_level": "info"}]
