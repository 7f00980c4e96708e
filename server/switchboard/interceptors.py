"""The RPC wrapper every Switchboard handler runs in: it binds the log context, turns domain
errors into statuses (the one place that does), hides unexpected errors behind INTERNAL, and emits
one ``rpc`` log event per call with its status and latency.

Streaming handlers are iterated (``async for``), never awaited.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

import grpc
import structlog
from google.protobuf.message import DecodeError

from switchboard.auth import KeyRing
from switchboard.errors import InvalidRequestError, SwitchboardError
from switchboard.status import internal_status, to_grpc_status

log = structlog.get_logger("switchboard")

_PREFIX = "/switchboard."
# The name of the API key the current call authenticated with ("" when authentication is off).
_KEY_NAME: contextvars.ContextVar[str] = contextvars.ContextVar("switchboard_api_key", default="")


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


class CallProbe(Protocol):
    """Watches one call for metrics: each streamed response, then the outcome."""

    def response(self, message: Any) -> None:
        """A response message is about to be sent."""
        ...

    def end(self, status: str, model: str) -> None:
        """The call ended with ``status`` (a gRPC code name); ``model`` is the one that served it, or ""."""
        ...


class CallObserver(Protocol):
    """Makes a probe per call (the metrics adapter implements it)."""

    def begin(self, rpc: str, streaming: bool) -> CallProbe:
        """A call of ``rpc`` (the method's short name) starts; ``streaming`` for server streams."""
        ...


class _NoProbe:
    def response(self, message: Any) -> None:
        return None

    def end(self, status: str, model: str) -> None:
        return None


class _NoObserver:
    def begin(self, rpc: str, streaming: bool) -> CallProbe:
        return _NoProbe()


class _Call:
    """Bookkeeping for one RPC: its log context, its outcome and the single log event."""

    __slots__ = ("probe", "rpc", "start", "status")

    def __init__(self, method: str, request: Any, observer: CallObserver, streaming: bool = False) -> None:
        self.rpc = method.rsplit("/", 1)[-1]
        self.start = time.perf_counter()
        self.status = "OK"
        self.probe = observer.begin(self.rpc, streaming)
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(rpc=self.rpc, request_id=os.urandom(12).hex(), account=_account(request))
        if key := _KEY_NAME.get():
            structlog.contextvars.bind_contextvars(api_key=key)

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
        self.probe.end(self.status, str(fields.get("model", "")))
        structlog.contextvars.clear_contextvars()


def _wrap_unary(
    method: str, behavior: Callable[..., Awaitable[Any]], observer: CallObserver
) -> Callable[..., Awaitable[Any]]:
    async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
        call = _Call(method, request, observer)
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


def _wrap_stream(
    method: str, behavior: Callable[..., AsyncIterator[Any]], observer: CallObserver
) -> Callable[..., AsyncIterator[Any]]:
    async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        call = _Call(method, request, observer, streaming=True)
        try:
            _check(request)
            async for response in behavior(request, context):
                call.probe.response(response)
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

    def __init__(self, observer: CallObserver | None = None) -> None:
        self._handlers: dict[str, grpc.RpcMethodHandler] = {}
        self.observer: CallObserver = observer or _NoObserver()

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
                _wrap_unary(method, handler.unary_unary, self.observer),
                request_deserializer=_tolerant(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        elif handler.unary_stream is not None:
            wrapped = grpc.unary_stream_rpc_method_handler(
                _wrap_stream(method, handler.unary_stream, self.observer),
                request_deserializer=_tolerant(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        else:
            return handler
        self._handlers[method] = wrapped
        return wrapped


def _denied(handler: grpc.RpcMethodHandler, status: grpc.Status) -> grpc.RpcMethodHandler:
    """A handler of the same kind as ``handler`` that refuses the call with ``status`` without
    parsing the request."""

    async def unary(request: bytes, context: grpc.aio.ServicerContext) -> None:
        await context.abort_with_status(status)

    async def stream(request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        await context.abort_with_status(status)
        yield None  # pragma: no cover - abort raises

    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(stream)
    return grpc.unary_unary_rpc_method_handler(unary)


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Checks the API key of every call to a Switchboard service (health and reflection stay open).

    It must come first in the server's interceptor list, before ``RpcInterceptor`` caches handlers.
    ``keys`` returns the key ring in force, so a reload takes effect on the next call.
    """

    def __init__(self, keys: Callable[[], KeyRing], observer: CallObserver | None = None) -> None:
        self.keys = keys
        self.observer: CallObserver = observer or _NoObserver()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        """The call's handler, or one that refuses it when its key is missing, unknown or not allowed."""
        method = handler_call_details.method
        try:
            key = self.keys().authenticate(method, handler_call_details.invocation_metadata)
        except SwitchboardError as exc:
            handler = await continuation(handler_call_details)
            if handler is None:
                return handler
            rpc = method.rsplit("/", 1)[-1]
            log.info("rpc", rpc=rpc, status=exc.code, reason=exc.reason, latency_ms=0.0)
            self.observer.begin(rpc, handler.unary_stream is not None).end(exc.code, "")
            return _denied(handler, to_grpc_status(exc))
        if key is not None:
            _KEY_NAME.set(key.name)  # the handler runs in this call's context: its log events name the key
        return await continuation(handler_call_details)
