"""Structured logging: JSON lines (or a console rendering), with the fields of the call in
progress merged in.

Each RPC gets one plain dict of fields (``open_call``); handlers add to it with ``bind`` and every
log line written during the call carries them. One dict per call in one context variable is
cheaper than a context variable per field: binding is a dict update and nothing needs clearing
when the call's task ends.
"""

from __future__ import annotations

import contextvars
import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

_CALL: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("switchboard_call", default=None)
_INFO = [True]  # whether info events are written: the per-call event is skipped entirely when not


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


def info_enabled() -> bool:
    """True when info-level events are written."""
    return _INFO[0]


def merge_call_fields(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: the call's fields, overridden by the event's own."""
    call = _CALL.get()
    if call:
        for key, value in call.items():
            event.setdefault(key, value)
    return event


def resolve_format(log_format: str, is_terminal: bool) -> str:
    """``json`` or ``console``: ``auto`` is the console format on a terminal and JSON otherwise."""
    if log_format == "auto":
        return "console" if is_terminal else "json"
    return log_format


def configure_logging(log_format: str = "json", level: str = "info") -> None:
    """Configure structlog once for the process (``log_format``: json, console or auto)."""
    fmt = resolve_format(log_format, sys.stdout.isatty())
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer()
    )
    threshold = logging.getLevelNamesMapping()[level.upper()]
    _INFO[0] = threshold <= logging.INFO
    structlog.configure(
        processors=[
            merge_call_fields,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(threshold),
        # One write() per line, so lines from several worker processes sharing stdout never interleave.
        logger_factory=structlog.WriteLoggerFactory(file=sys.stdout),
        cache_logger_on_first_use=True,
    )
