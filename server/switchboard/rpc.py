"""The RPC wrapper every Switchboard handler runs in, applied once at registration (no gRPC
interceptors, so nothing runs per call that a call does not need).

For each call it: checks the API key (before the request is even parsed), parses the request
(bytes that do not parse are INVALID_ARGUMENT ``MALFORMED_MESSAGE``), binds the log context, turns
domain errors into statuses (the one place that does), hides unexpected errors behind INTERNAL,
updates the metrics and emits one ``rpc`` log event with its status and latency.

Streaming handlers are iterated (``async for``), never awaited. Health checking and reflection
are registered as they are: they are not Switchboard services and stay open.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

import grpc
import structlog
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import DecodeError
from google.protobuf.message_factory import GetMessageClass
from opentelemetry import context as otel_context
from opentelemetry import trace

from switchboard import logs, tracing
from switchboard.auth import KeyRing
from switchboard.convert import new_request_id
from switchboard.errors import InvalidRequestError, SwitchboardError
from switchboard.status import internal_status, to_grpc_status

log = structlog.get_logger("switchboard")
_CODES = {code.name: code.value[0] for code in grpc.StatusCode}


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

    def begin(self, service: str, rpc: str, streaming: bool) -> CallProbe:
        """A call of ``rpc`` (the method's short name) of ``service`` (its full name) starts;
        ``streaming`` for server streams."""
        ...


class _NoProbe:
    def response(self, message: Any) -> None:
        return None

    def end(self, status: str, model: str) -> None:
        return None


class _NoObserver:
    def begin(self, service: str, rpc: str, streaming: bool) -> CallProbe:
        return _NoProbe()


class Guard:
    """What every call passes through: the key ring in force (read per call, so a reload takes
    effect on the next call), the metrics observer and the tracer (None: no tracing)."""

    __slots__ = ("keys", "observer", "tracer")

    def __init__(
        self, keys: Callable[[], KeyRing], observer: CallObserver | None = None, tracer: trace.Tracer | None = None
    ) -> None:
        self.keys = keys
        self.observer: CallObserver = observer or _NoObserver()
        self.tracer = tracer


class _Method:
    """One wrapped method, resolved once at registration: its names, its request parser and the
    guard its calls pass through."""

    __slots__ = ("guard", "parse", "path", "rpc", "service")

    def __init__(self, service: str, rpc: str, parse: Callable[[bytes], Any], guard: Guard) -> None:
        self.service = service
        self.rpc = rpc
        self.path = f"/{service}/{rpc}"
        self.parse = parse
        self.guard = guard


def _account(request: Any) -> str:
    inner = getattr(request, "request", None)
    return str(getattr(inner if inner is not None else request, "account_id", ""))[:256]


class _Call:
    """Bookkeeping for one RPC: its log context, its outcome and the single log event."""

    __slots__ = ("fields", "method", "probe", "span", "start", "status", "token")

    def __init__(self, method: _Method, streaming: bool, context: grpc.aio.ServicerContext) -> None:
        self.method = method
        self.start = time.perf_counter()
        self.status = "OK"
        self.probe = method.guard.observer.begin(method.service, method.rpc, streaming)
        self.fields = logs.open_call(rpc=method.rpc, request_id=new_request_id())
        self.span: trace.Span | None = None
        self.token: object = None
        if method.guard.tracer is not None:
            self.span = method.guard.tracer.start_span(
                method.path[1:],
                context=tracing.parent_context(context.invocation_metadata()),
                kind=trace.SpanKind.SERVER,
                attributes={"rpc.system": "grpc", "rpc.service": method.service, "rpc.method": method.rpc},
            )
            self.token = otel_context.attach(trace.set_span_in_context(self.span))

    def admit(self, raw: bytes, context: grpc.aio.ServicerContext) -> Any:
        """Authenticate the call, then parse its request; raise SwitchboardError when either fails."""
        ring = self.method.guard.keys()
        if ring.enabled:
            key = ring.authenticate(self.method.path, context.invocation_metadata())
            if key is not None:
                self.fields["api_key"] = key.name
        try:
            request = self.method.parse(raw)
        except DecodeError as exc:
            raise InvalidRequestError("MALFORMED_MESSAGE", f"the request message does not parse: {exc}") from None
        self.fields["account"] = _account(request)
        return request

    async def fail(self, exc: BaseException, context: grpc.aio.ServicerContext) -> None:
        if isinstance(exc, SwitchboardError):
            self.status = exc.code
            self.fields["reason"] = exc.reason
            await context.abort_with_status(to_grpc_status(exc))
        request_id = str(self.fields.get("request_id", ""))
        self.status = "INTERNAL"
        log.exception("unexpected_error")
        await context.abort_with_status(internal_status(request_id))

    def done(self) -> None:
        fields = self.fields
        if logs.info_enabled():
            latency_ms = round((time.perf_counter() - self.start) * 1000, 3)
            # The fields are passed explicitly so the event is complete under any processor chain.
            logs.call_event({**fields, "status": self.status, "latency_ms": latency_ms, "event": "rpc"})
        self.probe.end(self.status, str(fields.get("model", "")))
        if self.span is not None:
            self._end_span()

    def _end_span(self) -> None:
        span = self.span
        assert span is not None
        span.set_attributes(tracing.span_attributes(self.fields))
        span.set_attribute("rpc.grpc.status_code", _CODES.get(self.status, 2))
        if self.status != "OK":
            span.set_status(trace.Status(trace.StatusCode.ERROR, str(self.fields.get("reason", self.status))))
        span.end()
        otel_context.detach(self.token)  # type: ignore[arg-type]


def _wrap_unary(method: _Method, behavior: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    async def unary(raw: bytes, context: grpc.aio.ServicerContext) -> Any:
        call = _Call(method, False, context)
        try:
            request = call.admit(raw, context)
            return await behavior(request, context)
        except (asyncio.CancelledError, grpc.aio.AbortError):
            call.status = "CANCELLED" if context.cancelled() else call.status
            raise
        except Exception as exc:  # every failure is reported as a status; nothing escapes raw
            await call.fail(exc, context)
        finally:
            call.done()

    return unary


def _wrap_stream(method: _Method, behavior: Callable[..., AsyncIterator[Any]]) -> Callable[..., AsyncIterator[Any]]:
    async def stream(raw: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        call = _Call(method, True, context)
        try:
            request = call.admit(raw, context)
            probe = call.probe
            async for response in behavior(request, context):
                probe.response(response)
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


def add_service(server: grpc.aio.Server, service: ServiceDescriptor, servicer: object, guard: Guard) -> None:
    """Register ``servicer``'s implementation of ``service`` on ``server``, every method wrapped.

    The handlers take the request's raw bytes (the wrapper parses them after the key check) and
    serialize responses with the generated message classes."""
    handlers: dict[str, grpc.RpcMethodHandler] = {}
    for m in service.methods:
        if m.client_streaming:
            raise TypeError(f"{service.full_name}.{m.name}: client streaming is not supported")
        method = _Method(service.full_name, m.name, GetMessageClass(m.input_type).FromString, guard)
        serialize = GetMessageClass(m.output_type).SerializeToString
        behavior = getattr(servicer, m.name)
        if m.server_streaming:
            handlers[m.name] = grpc.unary_stream_rpc_method_handler(
                _wrap_stream(method, behavior), response_serializer=serialize
            )
        else:
            handlers[m.name] = grpc.unary_unary_rpc_method_handler(
                _wrap_unary(method, behavior), response_serializer=serialize
            )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service.full_name, handlers),))
    server.add_registered_method_handlers(service.full_name, handlers)
