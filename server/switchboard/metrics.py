"""Prometheus metrics, fed by the RPC wrapper and served over HTTP on their own port.

Every metric lives in the server's own registry (so several servers in one process, as in the
tests, do not mix). Labels only take values from closed sets: RPC names, gRPC code names and
catalog model ids. Beside Switchboard's own metrics are the standard gRPC server metrics of
go-grpc-prometheus (``grpc_server_started_total``, ``grpc_server_handled_total``,
``grpc_server_handling_seconds``), so existing gRPC dashboards work unchanged.

With several workers (``serve --workers N``) the supervisor serves one ``/metrics`` for all of
them: it gives each worker a shared directory (prometheus_client's multiprocess mode, through
``PROMETHEUS_MULTIPROC_DIR``), where the workers' values live and are summed at scrape time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from switchboard.rpc import CallProbe
from switchboard.types import HealthView, Model

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0)
_GAP_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_HANDLING_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
_OUTPUT = frozenset({"delta", "artifact", "tool_call"})
_HEALTH_GAUGE_INTERVAL_S = 1.0


def grpc_code_label(name: str) -> str:
    """The ``grpc_code`` label of a status code name, spelled as go-grpc-prometheus does
    (``INVALID_ARGUMENT`` -> ``InvalidArgument``, ``CANCELLED`` -> ``Canceled``)."""
    if name in ("OK", "CANCELLED"):
        return "OK" if name == "OK" else "Canceled"
    return "".join(part.capitalize() for part in name.split("_"))


class Metrics:
    """The server's metrics and the per-call probes that update them."""

    def __init__(
        self, health: Callable[[], tuple[HealthView, tuple[Model, ...]]] | None = None, *, worker: bool = False
    ) -> None:
        """``worker``: this process is one of a supervisor's workers, whose values the supervisor
        serves (multiprocess mode); model health is then written to a gauge every second instead
        of being read at scrape time."""
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "switchboard_requests",
            "Finished calls by RPC, gRPC status code and serving model.",
            ("rpc", "code", "model"),
            registry=r,
        )
        self.latency = Histogram(
            "switchboard_rpc_latency_seconds",
            "Time from the start to the end of a unary call.",
            ("rpc",),
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "switchboard_generate_time_to_first_token_seconds",
            "Generate: time from the start of the call to its first output frame.",
            ("model",),
            buckets=_TTFT_BUCKETS,
            registry=r,
        )
        self.gap = Histogram(
            "switchboard_generate_inter_token_seconds",
            "Generate: time between consecutive output frames.",
            ("model",),
            buckets=_GAP_BUCKETS,
            registry=r,
        )
        self.fallbacks = Counter(
            "switchboard_fallbacks",
            "Generate: a model failed before output and the next one was tried.",
            ("from_model", "to_model", "reason"),
            registry=r,
        )
        self.credits = Counter(
            "switchboard_credits_charged", "Credits charged by completed Generate calls.", ("model",), registry=r
        )
        self.in_flight = Gauge(
            "switchboard_streams_in_flight", "Generate streams running now.", registry=r, multiprocess_mode="livesum"
        )
        self.workers = Gauge(
            "switchboard_worker_processes", "Server processes serving.", registry=r, multiprocess_mode="livesum"
        )
        self.workers.set(1)
        rpc_labels = ("grpc_type", "grpc_service", "grpc_method")
        self.grpc_started = Counter("grpc_server_started", "RPCs started on the server.", rpc_labels, registry=r)
        self.grpc_handled = Counter(
            "grpc_server_handled",
            "RPCs completed on the server, by status code.",
            (*rpc_labels, "grpc_code"),
            registry=r,
        )
        self.grpc_handling = Histogram(
            "grpc_server_handling_seconds",
            "Time from the start of an RPC to its end (a whole stream for streaming RPCs).",
            rpc_labels,
            buckets=_HANDLING_BUCKETS,
            registry=r,
        )
        self.c_grpc_started = _Children(self.grpc_started)
        self.c_grpc_handled = _Children(self.grpc_handled)
        self.c_grpc_handling = _Children(self.grpc_handling)
        self.c_requests = _Children(self.requests)
        self.c_latency = _Children(self.latency)
        self.c_ttft = _Children(self.ttft)
        self.c_gap = _Children(self.gap)
        self.c_fallbacks = _Children(self.fallbacks)
        self.c_credits = _Children(self.credits)
        self._http: Any = None
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()
        if health is not None and worker:
            cooling = Gauge(_COOLING, _COOLING_HELP, ("model",), registry=r, multiprocess_mode="livemax")
            self._thread = threading.Thread(
                target=self._follow_health, args=(health, cooling), name="metrics-health", daemon=True
            )
            self._thread.start()
        elif health is not None:
            r.register(_CoolingDown(health))

    def _follow_health(self, health: Callable[[], tuple[HealthView, tuple[Model, ...]]], gauge: Gauge) -> None:
        while True:
            view, models = health()
            for model in models:
                gauge.labels(model.id).set(0.0 if view.is_available(model.id) else 1.0)
            if self._stopped.wait(_HEALTH_GAUGE_INTERVAL_S):
                return

    def begin(self, service: str, rpc: str, streaming: bool) -> CallProbe:
        """A probe for one call."""
        return _Probe(self, service, rpc, streaming)

    def serve(self, listen: str) -> int:
        """Serve ``/metrics`` over HTTP on ``listen`` (HOST:PORT; port 0 picks one); return the port."""
        host, _, port = listen.rpartition(":")
        self._http, self._thread = start_http_server(int(port), host.strip("[]") or "127.0.0.1", self.registry)
        return int(self._http.server_port)

    def stop(self) -> None:
        """Stop the HTTP server and the health gauge's thread, if any."""
        self._stopped.set()
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None


class _Children:
    """Labelled children of a metric, looked up once per label set (prometheus_client's own
    ``labels()`` takes a lock on every call)."""

    __slots__ = ("cache", "metric")

    def __init__(self, metric: Any) -> None:
        self.metric = metric
        self.cache: dict[tuple[str, ...], Any] = {}

    def __call__(self, *labels: str) -> Any:
        child = self.cache.get(labels)
        if child is None:
            child = self.cache[labels] = self.metric.labels(*labels)
        return child


class _Probe:
    __slots__ = ("grpc_labels", "last", "metrics", "model", "rpc", "start", "streaming")

    def __init__(self, metrics: Metrics, service: str, rpc: str, streaming: bool) -> None:
        self.metrics = metrics
        self.rpc = rpc
        self.start = time.perf_counter()
        self.last = 0.0
        self.model = ""
        self.streaming = streaming
        self.grpc_labels = ("server_stream" if streaming else "unary", service, rpc)
        metrics.c_grpc_started(*self.grpc_labels).inc()
        if streaming:
            metrics.in_flight.inc()

    def response(self, message: Any) -> None:
        kind = message.WhichOneof("event") if hasattr(message, "WhichOneof") else None
        m = self.metrics
        if kind == "decision":
            self.model = message.decision.model.id
        elif kind == "fallback":
            f = message.fallback
            m.c_fallbacks(f.from_model_id, f.to_model_id, f.reason).inc()
            self.model = f.to_model_id
        elif kind in _OUTPUT:
            now = time.perf_counter()
            if self.last:
                m.c_gap(self.model).observe(now - self.last)
            else:
                m.c_ttft(self.model).observe(now - self.start)
            self.last = now
        elif kind == "completion":
            self.model = message.completion.model_id
            m.c_credits(self.model).inc(message.completion.credits_charged)

    def end(self, status: str, model: str) -> None:
        m = self.metrics
        elapsed = time.perf_counter() - self.start
        if self.streaming:
            m.in_flight.dec()
        else:
            m.c_latency(self.rpc).observe(elapsed)
        m.c_requests(self.rpc, status, model or self.model).inc()
        m.c_grpc_handled(*self.grpc_labels, grpc_code_label(status)).inc()
        m.c_grpc_handling(*self.grpc_labels).observe(elapsed)


_COOLING = "switchboard_model_cooling_down"
_COOLING_HELP = "1 while a model is cooling down."


class _CoolingDown(Collector):
    """Models the health view reports unavailable (cooling down), read at scrape time."""

    def __init__(self, health: Callable[[], tuple[HealthView, tuple[Model, ...]]]) -> None:
        self.health = health

    def describe(self) -> list[GaugeMetricFamily]:
        return [GaugeMetricFamily(_COOLING, _COOLING_HELP)]

    def collect(self) -> Iterator[GaugeMetricFamily]:
        view, models = self.health()
        family = GaugeMetricFamily(_COOLING, _COOLING_HELP, labels=("model",))
        for model in models:
            family.add_metric((model.id,), 0.0 if view.is_available(model.id) else 1.0)
        yield family


def serve_workers(listen: str, directory: str) -> tuple[Any, int]:
    """Serve ``/metrics`` on ``listen`` for every worker writing to ``directory`` (multiprocess
    mode); return the HTTP server (``shutdown()`` stops it) and its port. Run in the supervisor."""
    from prometheus_client import multiprocess  # noqa: PLC0415 - only supervisors need it

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
    host, _, port = listen.rpartition(":")
    http, _thread = start_http_server(int(port), host.strip("[]") or "127.0.0.1", registry)
    return http, int(http.server_port)
