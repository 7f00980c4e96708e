"""Helpers for tests of the core use-case (``Router``) without gRPC: a real app over a real
SQLite ledger, requests built from protobuf the way the servicer builds them, and a run driver."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

from switchboard import convert
from switchboard.app import App, build_app
from switchboard.providers.simulated import SimulationProfile
from switchboard.router import Completed, RunEvent
from switchboard.settings import Settings
from switchboard.types import GenerationRequest
from switchboard.v1 import catalog_pb2, router_pb2


def make_app(tmp_path: Path, **overrides: object) -> App:
    """An app with a fast simulator, an SQLite ledger and accounts created at first use."""
    fields: dict[str, object] = {
        "simulation": SimulationProfile(tokens=8),
        "ledger": f"sqlite:{tmp_path / 'usecase.db'}",
        "auto_create_accounts": True,
        "balance_cache_s": 0.0,
    }
    fields.update(overrides)
    return build_app(Settings(**fields))  # type: ignore[arg-type]


def request(account: str, request_id: str, **kw: object) -> GenerationRequest:
    """A text Generate request in core types."""
    kw.setdefault("modality", catalog_pb2.MODALITY_TEXT)
    pb = router_pb2.GenerateRequest(account_id=account, request_id=request_id, prompt="hello", **kw)  # type: ignore[arg-type]
    return convert.generation_request(pb, convert.Limits(), need_content=True)


async def run_all(app: App, gen: GenerationRequest) -> tuple[list[RunEvent], Completed]:
    """Run to the end, committing the completion as the servicer does."""
    events: list[RunEvent] = []
    async for event in app.router.run(gen):
        events.append(event)
        if isinstance(event, Completed):
            await event.commit()
    last = events[-1]
    assert isinstance(last, Completed)
    return events, last


async def until(events: AsyncIterator[RunEvent], kind: type) -> RunEvent:
    """Read events until one of ``kind``."""
    async for event in events:
        if isinstance(event, kind):
            return event
    raise AssertionError(f"no {kind.__name__}")
