"""Structured logging: JSON lines (or a console rendering), with the fields of the call in
progress merged in.

Each RPC gets one plain dict of fields (``open_call``); handlers add to it with ``bind`` and every
log line written during the call carries them. One dict per call in one context variable is
cheaper than a context variable per field: binding is a dict update and nothing needs clearing
when the call's task ends.

The JSON format is built for the one ``rpc`` event every call writes at ``info``: one processor
adds the level and timestamp and renders with orjson, and lines written on an event loop are
gathered and handed to a writer thread once per ``FLUSH_S`` (or every ``FLUSH_LINES`` lines), so
the loop never waits on the output. Lines written off a loop, and every event above ``info``, go
out at once (after the lines gathered before them, so the order is kept).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import contextvars
import logging
import os
import queue
import sys
import threading
import time
from collections.abc import MutableMapping
from typing import IO, Any

import orjson
import structlog

_CALL: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("switchboard_call", default=None)
_INFO = [True]  # whether info events are written: the per-call event is skipped entirely when not
_BOUND: list[Any] = [None]  # the per-call event's logger, bound by configure_logging
_FAST: list[LineWriter | None] = [None]  # the JSON line writer, when the JSON format is configured


def open_call(**fields: Any) -> dict[str, Any]:
    """Start the fields of a new call in the current context and return them."""
    call = dict(fields)
    _CALL.set(call)
    return call


def bind(**fields: Any) -> None:
    """Add ``fields`` to the call in progress (no-op outside a call)."""
    call = _CALL.get()
    if call is not None:
        call.update(fields)


def call_fields() -> dict[str, Any]:
    """The fields of the call in progress (empty outside a call)."""
    return _CALL.get() or {}


def call_event(fields: dict[str, Any]) -> None:
    """Write the per-call event (``fields`` include ``event``) at info. With the JSON format
    configured it is rendered and gathered directly, without structlog's dispatch; otherwise (the
    console format, tests capturing events) it goes through the configured logger."""
    writer = _FAST[0]
    if writer is not None:
        writer.gather(_render_json(None, "info", fields))
    else:
        fields = dict(fields)
        event_logger().info(fields.pop("event"), **fields)


def event_logger() -> Any:
    """The logger for the per-call event: bound once when ``configure_logging`` ran (a lazy proxy
    resolves its configuration on every call), the lazy proxy otherwise, so tests that swap the
    configuration (``structlog.testing.capture_logs``) see every event."""
    return _BOUND[0] or structlog.get_logger("switchboard")


def info_enabled() -> bool:
    """True when info-level events are written."""
    return _INFO[0]


def merge_call_fields(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: the call's fields, overridden by the event's own."""
    call = _CALL.get()
    if call:
        return {**call, **event}
    return event


FLUSH_S = 0.05
FLUSH_LINES = 256
_LEVELS = {"warn": "warning", "exception": "error", "msg": "info"}


class _Clock:
    """ISO-8601 UTC timestamps with microseconds, the date and time formatted once a second."""

    __slots__ = ("prefix", "second")

    def __init__(self) -> None:
        self.second = -1
        self.prefix = ""

    def now(self) -> str:
        t = time.time()
        second = int(t)
        if second != self.second:
            self.second = second
            self.prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self.prefix}.{int((t - second) * 1_000_000):06d}Z"


_clock = _Clock()


def _render_json(_logger: Any, method: str, event: MutableMapping[str, Any]) -> bytes:
    """structlog processor: level, timestamp, exception text, then one JSON line (orjson)."""
    event["level"] = _LEVELS.get(method, method)
    event["timestamp"] = _clock.now()
    if event.get("exc_info"):
        event = structlog.processors.format_exc_info(_logger, method, event)
    return orjson.dumps(event, default=repr, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_APPEND_NEWLINE)


PIPE_BUF = 4096  # writes up to this size to a pipe are atomic: lines of several workers never mix


def _chunks(data: bytes) -> list[bytes]:
    """``data`` (whole lines) cut at line ends into pieces of at most PIPE_BUF bytes where it can."""
    out: list[bytes] = []
    while len(data) > PIPE_BUF:
        cut = data.rfind(b"\n", 0, PIPE_BUF) + 1 or data.find(b"\n") + 1 or len(data)
        out.append(data[:cut])
        data = data[cut:]
    if data:
        out.append(data)
    return out


class LineWriter:
    """A structlog logger writing rendered lines (bytes) to a file. Info and debug lines written
    on an event loop are gathered and written by a thread; every other line is written at once,
    after whatever was gathered before it."""

    def __init__(self, file: IO[str]) -> None:
        self._file = file
        self._lines: list[bytes] = []
        self._timer: asyncio.TimerHandle | None = None
        self._queue: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def _write(self, data: bytes) -> None:
        try:
            fd = self._file.fileno()
        except (AttributeError, OSError, ValueError):  # not a real file (a test's capture): write text
            self._file.write(data.decode("utf-8", "replace"))
            self._file.flush()
            return
        self._file.flush()
        for piece in _chunks(data):
            view = memoryview(piece)
            while view:
                view = view[os.write(fd, view) :]

    def _drain(self) -> None:
        while (data := self._queue.get()) is not None:
            with contextlib.suppress(OSError, ValueError):  # the output is gone (closed pipe or file)
                self._write(data)

    def _hand_over(self) -> None:
        self._timer = None
        if not self._lines:
            return
        data = b"".join(self._lines)
        self._lines.clear()
        if self._thread is None:
            self._thread = threading.Thread(target=self._drain, name="switchboard-log", daemon=True)
            self._thread.start()
        self._queue.put(data)

    def gather(self, line: bytes) -> None:
        """Write one info or debug line: gathered on an event loop, at once otherwise."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.write(line)
            return
        self._lines.append(line)
        if len(self._lines) >= FLUSH_LINES:
            self._hand_over()
        elif self._timer is None:
            self._timer = loop.call_later(FLUSH_S, self._hand_over)

    def write(self, line: bytes) -> None:
        """Write one line now, after everything gathered or handed over before it."""
        self.flush()
        with contextlib.suppress(OSError, ValueError):
            self._write(line)

    def flush(self) -> None:
        """Write every gathered line and wait until the thread has written what it holds."""
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
            self._hand_over()
            if self._thread is not None:
                self._queue.put(None)
                self._thread.join(timeout=5)
                self._thread = None

    debug = info = msg = log = gather
    warning = warn = error = err = critical = exception = fatal = failure = write


_WRITERS: list[LineWriter] = []


def flush() -> None:
    """Write every gathered log line (at shutdown)."""
    for writer in _WRITERS:
        writer.flush()


atexit.register(flush)


def resolve_format(log_format: str, is_terminal: bool) -> str:
    """``json`` or ``console``: ``auto`` is the console format on a terminal and JSON otherwise."""
    if log_format == "auto":
        return "console" if is_terminal else "json"
    return log_format


def configure_logging(log_format: str = "json", level: str = "info") -> None:
    """Configure structlog once for the process (``log_format``: json, console or auto)."""
    log_format = resolve_format(log_format, sys.stdout.isatty())
    threshold = logging.getLevelNamesMapping()[level.upper()]
    _INFO[0] = threshold <= logging.INFO
    flush()
    if log_format == "json":
        writer = LineWriter(sys.stdout)
        _WRITERS[:] = [writer]
        structlog.configure(
            processors=[merge_call_fields, _render_json],
            wrapper_class=structlog.make_filtering_bound_logger(threshold),
            # Whole lines in one write() each batch, so worker processes sharing stdout never interleave.
            logger_factory=lambda *_args: writer,
            cache_logger_on_first_use=True,
        )
        _BOUND[0] = structlog.get_logger("switchboard").bind()
        _FAST[0] = writer if _INFO[0] else None
        return
    structlog.configure(
        processors=[
            merge_call_fields,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.dev.ConsoleRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(threshold),
        logger_factory=structlog.WriteLoggerFactory(file=sys.stdout),
        cache_logger_on_first_use=True,
    )
    _BOUND[0] = structlog.get_logger("switchboard").bind()
    _FAST[0] = None
