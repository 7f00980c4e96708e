"""Settlement rules of the Generate use-case, run on the core object (``Router``) without gRPC:
what each way of ending costs, the completion charged only once reported, lost holds."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from switchboard.errors import HoldLostError, ShuttingDownError
from switchboard.ledger import EntryKind
from switchboard.providers.simulated import SimulationProfile
from switchboard.router import Completed
from switchboard.types import TextChunk
from usecase import make_app, request, run_all, until

NANO = "gpt-5.4-nano"


async def balance(app: object, account: str) -> tuple[int, int]:
    record = await app.ledger.get(account)  # type: ignore[attr-defined]
    assert record is not None
    return record.balance, record.held


async def assert_consistent(app: object, account: str) -> None:
    record = await app.ledger.get(account)  # type: ignore[attr-defined]
    total, _, _ = await app.ledger.totals(account)  # type: ignore[attr-defined]
    assert total == record.balance


class TestSettlementOutcomes:
    """How a run ends decides what it costs."""

    async def test_completed_charges_the_actual_cost(self, tmp_path: Path) -> None:
        """A completed run is charged its cost, reported on the completion with the balance after."""
        app = make_app(tmp_path)
        _, done = await run_all(app, request("c", "r1", pinned_model_id=NANO))
        assert done.credits_charged > 0
        assert done.balance_remaining == 500 - done.credits_charged
        assert await balance(app, "c") == (500 - done.credits_charged, 0)
        await assert_consistent(app, "c")
        await app.close()

    async def test_completion_not_committed_is_not_charged(self, tmp_path: Path) -> None:
        """The completion is reported before the charge: a run closed before ``commit`` (its reply
        could not be built or sent) is charged nothing."""
        app = make_app(tmp_path)
        run = app.router.run(request("n", "r1", pinned_model_id=NANO))
        done = await until(run, Completed)
        assert isinstance(done, Completed)
        assert done.credits_charged > 0
        await run.aclose()
        assert await balance(app, "n") == (500, 0)
        await assert_consistent(app, "n")
        await app.close()

    async def test_caller_leaving_after_output_pays_for_what_was_delivered(self, tmp_path: Path) -> None:
        """A caller that goes away after output is charged the delivered part."""
        app = make_app(tmp_path, simulation=SimulationProfile(tokens=400, inter_token_s=0.01))
        run = app.router.run(request("g", "r1", pinned_model_id=NANO))
        await until(run, TextChunk)
        await run.aclose()
        spent = 500 - (await balance(app, "g"))[0]
        assert spent > 0
        assert (await balance(app, "g"))[1] == 0
        await assert_consistent(app, "g")
        await app.close()

    async def test_stream_cut_by_the_server_is_not_charged(self, tmp_path: Path) -> None:
        """A run the server cuts at shutdown ends SERVER_SHUTTING_DOWN and is charged nothing."""
        app = make_app(tmp_path, simulation=SimulationProfile(tokens=400, inter_token_s=0.01))
        started = asyncio.Event()

        async def consume() -> None:
            async for event in app.router.run(request("s", "r1", pinned_model_id=NANO)):
                if isinstance(event, TextChunk):
                    started.set()

        task = asyncio.create_task(consume())
        await started.wait()
        assert app.billing.cut() == 1
        with pytest.raises(ShuttingDownError):
            await task
        assert await balance(app, "s") == (500, 0)
        entries = await app.ledger.entries("s", 0, 100)
        assert EntryKind.CHARGE not in [e.kind for e in entries]
        await app.close()


class TestLostHold:
    """A run whose hold was swept does not finish free."""

    async def test_swept_hold_refuses_the_completion(self, tmp_path: Path) -> None:
        """Another replica released the hold (it looked expired) and the run reaches its end: the
        completion's charge finds no hold and the run ends HOLD_LOST instead of completing free."""
        app = make_app(tmp_path, simulation=SimulationProfile(tokens=20, inter_token_s=0.01))
        run = app.router.run(request("h", "r1", pinned_model_id=NANO))
        await until(run, TextChunk)
        await app.ledger.settle("h", "r1", 0, "expired")  # what a sweeper does to an expired hold
        done = await until(run, Completed)
        assert isinstance(done, Completed)
        with pytest.raises(HoldLostError):
            await done.commit()
        await run.aclose()
        assert await balance(app, "h") == (500, 0)
        await assert_consistent(app, "h")
        await app.close()

    async def test_swept_hold_stops_the_output(self, tmp_path: Path) -> None:
        """With a short hold life, the keep-alive finds the hold gone and the next output is
        refused with HOLD_LOST; nothing is charged."""
        app = make_app(
            tmp_path, simulation=SimulationProfile(tokens=2000, inter_token_s=0.01), hold_ttl_s=0.6, lease_s=0.6
        )
        run = app.router.run(request("k", "r1", pinned_model_id=NANO))
        await until(run, TextChunk)
        await app.ledger.settle("k", "r1", 0, "expired")
        with pytest.raises(HoldLostError):
            async for _ in run:
                pass
        assert await balance(app, "k") == (500, 0)
        await assert_consistent(app, "k")
        await app.close()

    async def test_swept_slot_stops_the_output(self, tmp_path: Path) -> None:
        """A concurrency slot taken away (it lapsed) also ends the run: the limit is never exceeded."""
        app = make_app(
            tmp_path, simulation=SimulationProfile(tokens=2000, inter_token_s=0.01), hold_ttl_s=0.6, lease_s=0.6
        )
        run = app.router.run(request("z", "r1", pinned_model_id=NANO))
        await until(run, TextChunk)
        meter = next(iter(app.billing.running.values()))
        await app.ledger.release_slot("z", meter.lease)
        with pytest.raises(HoldLostError) as err:
            async for _ in run:
                pass
        assert err.value.metadata["lost"] == "concurrency slot"
        assert await balance(app, "z") == (500, 0)
        await app.close()
