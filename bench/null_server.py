"""The baseline for benchmarks: RouterService with handlers that return a constant response.

It speaks the same protos, registers reflection like Switchboard, and starts the same way
(``--workers`` processes sharing the port), so Switchboard's figures can be read as a ratio to
what grpc.aio itself allows on the machine. The SelectModel response is the very decision
Switchboard returns for the benchmark request, so both put the same bytes on the wire.

With ``--sim-ttft-ms``/``--sim-inter-token-ms``/``--sim-tokens`` its Generate streams the
simulated provider's output instead of constant frames: the provider behind bare gRPC, the
baseline that isolates what Switchboard itself adds to a stream.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import subprocess
import sys
from pathlib import Path

import grpc
from switchboard.app import build_app
from switchboard.catalog import load_catalog
from switchboard.convert import generation_request
from switchboard.providers.simulated import SimulatedProvider, SimulationProfile
from switchboard.reflection import enable_reflection
from switchboard.selection import derive_requirements
from switchboard.server import run_loop
from switchboard.settings import Settings
from switchboard.types import (
    AccountState,
    GenerationOptions,
    GenerationRequest,
    Modality,
    SelectionRequest,
    TextChunk,
)
from switchboard.v1 import router_pb2, router_pb2_grpc


def constant_decision() -> router_pb2.SelectModelResponse:
    """The SelectModel response Switchboard gives the benchmark's text request."""
    app = build_app(Settings(ledger="sqlite::memory:"))
    req = router_pb2.GenerateRequest(account_id="bench", modality=1, prompt="Summarise the meeting notes")
    gen = generation_request(req, app.settings.limits, need_content=False)
    decision = app.selector.select(gen.selection, AccountState("bench", app.catalog.default_plan, 500))
    return router_pb2.SelectModelResponse(decision=app.messages.decision(decision, True))


class NullRouter(router_pb2_grpc.RouterServiceServicer):
    """Constant answers, no work."""

    def __init__(self, provider: SimulatedProvider | None = None) -> None:
        self.provider = provider
        self.model = load_catalog(None).models[0]
        self.select = constant_decision()
        self.listing = router_pb2.ListModelsResponse()
        self.frames = [
            router_pb2.GenerateResponse(decision=self.select.decision),
            *[router_pb2.GenerateResponse(delta=router_pb2.TextDelta(text=" token")) for _ in range(8)],
            router_pb2.GenerateResponse(completion=router_pb2.Completion(model_id="null")),
        ]

    async def ListModels(self, request: object, context: object) -> router_pb2.ListModelsResponse:
        return self.listing

    async def SelectModel(self, request: object, context: object) -> router_pb2.SelectModelResponse:
        return self.select

    async def Generate(self, request: router_pb2.GenerateRequest, context: object):  # type: ignore[no-untyped-def]
        if self.provider is None:
            for frame in self.frames:
                yield frame
            return
        yield self.frames[0]
        gen = GenerationRequest(
            request_id=request.request_id,
            selection=SelectionRequest(request.account_id, derive_requirements(Modality.TEXT)),
            prompt=request.prompt,
            options=GenerationOptions(),
        )
        async for event in self.provider.stream(self.model, gen):
            if isinstance(event, TextChunk):
                yield router_pb2.GenerateResponse(delta=router_pb2.TextDelta(text=event.text))
        yield self.frames[-1]


async def serve(listen: str, port_file: str | None, sim: SimulationProfile | None) -> None:
    server = grpc.aio.server(options=[("grpc.so_reuseport", 1)])
    router_pb2_grpc.add_RouterServiceServicer_to_server(NullRouter(SimulatedProvider(sim) if sim else None), server)
    enable_reflection((router_pb2.DESCRIPTOR.services_by_name["RouterService"].full_name,), server)
    port = server.add_insecure_port(listen)
    await server.start()
    if port_file:
        Path(port_file).write_text(str(port))  # noqa: ASYNC240 - once, at start-up
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--listen", required=True)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--port-file")
    parser.add_argument("--sim-ttft-ms", type=float)
    parser.add_argument("--sim-inter-token-ms", type=float, default=20.0)
    parser.add_argument("--sim-tokens", type=int, default=100)
    args, _ = parser.parse_known_args()
    sim = None
    if args.sim_ttft_ms is not None:
        sim = SimulationProfile(
            time_to_first_token_s=args.sim_ttft_ms / 1000,
            inter_token_s=args.sim_inter_token_ms / 1000,
            tokens=args.sim_tokens,
        )
    if args.workers <= 1:
        run_loop(serve(args.listen, args.port_file, sim))  # the same event loop Switchboard runs
        return
    if args.listen.endswith(":0"):
        parser.error("several workers need a fixed port")
    children = [
        subprocess.Popen(
            [sys.executable, __file__, *sys.argv[1:], "--workers", "1", "--port-file", f"{args.port_file}.{i}"]
        )
        for i in range(args.workers)
    ]

    def forward(signum: int, _frame: object) -> None:
        for c in children:
            c.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for c in children:
        c.wait()


if __name__ == "__main__":
    main()
