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
from google.protobuf.message import DecodeError

from switchboard.errors import InvalidRequestError, SwitchboardError
from switchboard.status import internal_status, to_grpc_status

log = structlog.get_logger("switchboard")

_PREFIX = "/switchboard."


class _Malformed:
    """Stands in for a request whose bytes did not parse, so the handler can refuse it properly."""

    __slots__ = ("error",)

    def __init__(self, error: str) -> None:
        self.error = error


def _tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None

    def parse(data: bytes) -> Any:
        try:
            return deserializer(data)
        except DecodeError as exc:
            return _Malformed(str(exc))

    return parse


def _check(request: Any) -> None:
    if isinstance(request, _Malformed):
        raise InvalidRequestError("MALFORMED_MESSAGE", f"the request message does not parse: {request.error}")


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
        # The context is passed explicitly so the event is complete under any processor chain.
        fields = structlog.contextvars.get_contextvars()
        log.info("rpc", **{**fields, "status": self.status, "latency_ms": latency_ms})
        structlog.contextvars.clear_contextvars()


def _wrap_unary(method: str, behavior: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
        call = _Call(method, request)
        try:
            _check(request)
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
            _check(request)
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
                request_deserializer=_tolerant(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        elif handler.unary_stream is not None:
            wrapped = grpc.unary_stream_rpc_method_handler(
                _wrap_stream(method, handler.unary_stream),
                request_deserializer=_tolerant(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        else:
            return handler
        self._handlers[method] = wrapped
        return wrapped
