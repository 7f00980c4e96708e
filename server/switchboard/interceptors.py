"""The RPC wrapper every Switchboard handler runs in: it binds the log context, turns domain
errors into statuses (the one place that does), hides unexpected errors behind INTERNAL, and emits
one ``rpc`` log event per call with its status and latency.

Streaming handlers are iterated (``async for``), never awaited.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import structlog

from switchboard.errors import SwitchboardError
from switchboard.status import internal_status, to_grpc_status

log = structlog.get_logger("switchboard")

_PREFIX = "/switchboard."


def _account(request: Any) -> str:
    inner = getattr(request, "request", None)
    return str(getattr(inner if inner is not None else request, "account_id", ""))[:256]


class _Call:
    """Bookkeeping for one RPC: its log context, its outcome and the single log event."""

    __slots__ = ("rpc", "start", "status")

    def __init__(self, method: str, request: Any) -> None:
        self.rpc = method.rsplit("/", 1)[-1]
        self.start = time.perf_counter()
        self.status = "OK"
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(rpc=self.rpc, request_id=uuid.uuid4().hex, account=_account(request))

    async def fail(self, exc: BaseException, context: grpc.aio.ServicerContext) -> None:
        if isinstance(exc, SwitchboardError):
            self.status = exc.code
            structlog.contextvars.bind_contextvars(reason=exc.reason)
            await context.abort_with_status(to_grpc_status(exc))
        request_id = str(structlog.contextvars.get_contextvars().get("request_id", ""))
        self.status = "INTERNAL"
        log.exception("unexpected_error")
        await context.abort_with_status(internal_status(request_id))

    def done(self) -> None:
        latency_ms = round((time.perf_counter() - self.start) * 1000, 3)
        log.info("rpc", status=self.status, latency_ms=latency_ms)
        structlog.contextvars.clear_contextvars()


def _wrap_unary(method: str, behavior: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
        call = _Call(method, request)
        try:
            return await behavior(request, context)
        except (asyncio.CancelledError, grpc.aio.AbortError):
            call.status = "CANCELLED" if context.cancelled() else call.status
            raise
        except Exception as exc:  # every failure is reported as a status; nothing escapes raw
            await call.fail(exc, context)
        finally:
            call.done()

    return unary


def _wrap_stream(method: str, behavior: Callable[..., AsyncIterator[Any]]) -> Callable[..., AsyncIterator[Any]]:
    async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        call = _Call(method, request)
        try:
            async for response in behavior(request, context):
                yield response
        except (asyncio.CancelledError, GeneratorExit):
            call.status = "CANCELLED"
            raise
        except grpc.aio.AbortError:
            raise
        except Exception as exc:  # every failure is reported as a status; nothing escapes raw
            await call.fail(exc, context)
        finally:
            call.done()

    return stream


class RpcInterceptor(grpc.aio.ServerInterceptor):
    """Wraps the handlers of Switchboard's own services (health and reflection pass through)."""

    def __init__(self) -> None:
        self._handlers: dict[str, grpc.RpcMethodHandler] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        """The wrapped handler for the call's method (built once per method)."""
        method = handler_call_details.method
        cached = self._handlers.get(method)
        if cached is not None:
            return cached
        handler = await continuation(handler_call_details)
        if handler is None or not method.startswith(_PREFIX):
            return handler
        if handler.unary_unary is not None:
            wrapped = grpc.unary_unary_rpc_method_handler(
                _wrap_unary(method, handler.unary_unary),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        elif handler.unary_stream is not None:
            wrapped = grpc.unary_stream_rpc_method_handler(
                _wrap_stream(method, handler.unary_stream),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        else:
            return handler
        self._handlers[method] = wrapped
        return wrapped
