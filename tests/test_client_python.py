"""The Python client package against a live server process: list, select, stream, cancel, errors."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from procs import ServerProcess
from switchboard_client import SwitchboardClient, SwitchboardError, build_request
from switchboard_client.v1 import accounts_pb2, router_pb2


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    s = ServerProcess(
        tmp_path,
        "py",
        "--workers",
        "1",
        "--ledger",
        f"sqlite:{tmp_path / 'l.db'}",
        "--auto-create-accounts",
        "--sim-ttft-ms",
        "0",
        "--sim-inter-token-ms",
        "20",
        "--sim-tokens",
        "20",
    )
    yield s
    s.stop()


class TestPythonClient:
    """Every call a backend service makes, through the typed layer."""

    async def test_list_select_generate(self, server: ServerProcess) -> None:
        """List, select (automatic and pinned) and stream to completion."""
        async with SwitchboardClient(server.target) as sb:
            models = await sb.list_models(modality="speech")
            assert [m.model.id for m in models][:1] == ["gpt-4o-mini-tts"]
            auto = await sb.select_model(account_id="py", prompt="Hi", web_search=True)
            assert auto.model.id == "gemini-3.1-flash-lite"
            pinned = await sb.select_model(build_request("py", "Hi", pinned_model_id="gpt-5.4"))
            assert (pinned.model.id, list(pinned.fallback_model_ids)) == ("gpt-5.4", [])
            events = [e async for e in sb.generate(account_id="py", prompt="Hello", request_id="g1")]
            assert isinstance(events[0], router_pb2.Decision)
            assert isinstance(events[-1], router_pb2.Completion)
            assert sum(isinstance(e, router_pb2.TextDelta) for e in events) == 20
            assert events[-1].balance_remaining == 499

    async def test_cancel_mid_stream(self, server: ServerProcess) -> None:
        """Leaving the loop cancels the call; the server returns the slot and settles the hold."""
        async with SwitchboardClient(server.target) as sb:
            seen = 0
            started = time.monotonic()
            async for event in sb.generate(account_id="pc", prompt="Long", request_id="c1", timeout=30):
                seen += isinstance(event, router_pb2.TextDelta)
                if seen == 3:
                    break
            assert time.monotonic() - started < 5
            for _ in range(100):
                acct = (await sb.accounts.GetAccount(accounts_pb2.GetAccountRequest(account_id="pc"))).account
                if acct.requests_in_flight == 0 and acct.held_credits == 0:
                    break
                await asyncio.sleep(0.05)
            assert (acct.requests_in_flight, acct.held_credits, acct.balance) == (0, 0, 499)

    async def test_error_reason(self, server: ServerProcess) -> None:
        """An unknown pinned model raises SwitchboardError with NOT_FOUND and MODEL_NOT_FOUND."""
        async with SwitchboardClient(server.target) as sb:
            with pytest.raises(SwitchboardError) as err:
                await sb.select_model(account_id="py", prompt="Hi", pinned_model_id="gpt-9")
            assert err.value.code is grpc.StatusCode.NOT_FOUND
            assert err.value.reason == "MODEL_NOT_FOUND"
            assert err.value.metadata == {"model_id": "gpt-9"}
            with pytest.raises(SwitchboardError) as err2:
                async for _ in sb.generate(account_id="py", prompt="", request_id="e1"):
                    pass
            assert err2.value.reason == "EMPTY_PROMPT"
