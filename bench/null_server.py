"""The baseline for benchmarks: RouterService with handlers that return a constant response.

It speaks the same protos, registers reflection like Switchboard, and starts the same way
(``--workers`` processes sharing the port), so Switchboard's figures can be read as a ratio to
what grpc.aio itself allows on the machine. The SelectModel response is the very decision
Switchboard returns for the benchmark request, so both put the same bytes on the wire.
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
from switchboard.convert import generation_request
from switchboard.reflection import enable_reflection
from switchboard.settings import Settings
from switchboard.types import AccountState
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

    def __init__(self) -> None:
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

    async def Generate(self, request: object, context: object):  # type: ignore[no-untyped-def]
        for frame in self.frames:
            yield frame


async def serve(listen: str, port_file: str | None) -> None:
    server = grpc.aio.server(options=[("grpc.so_reuseport", 1)])
    router_pb2_grpc.add_RouterServiceServicer_to_server(NullRouter(), server)
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
    args = parser.parse_args()
    if args.workers <= 1:
        asyncio.run(serve(args.listen, args.port_file))
        return
    if args.listen.endswith(":0"):
        parser.error("several workers need a fixed port")
    children = [
        subprocess.Popen([sys.executable, __file__, "--listen", args.listen, "--port-file", f"{args.port_file}.{i}"])
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
