"""The Generate use-case's selection and fallback rules, run on the core object (``Router``)
without gRPC, against the simulated provider and a real SQLite ledger."""

from __future__ import annotations

from pathlib import Path

import pytest
from switchboard.errors import SwitchboardError
from switchboard.generation import FallbackNotice
from switchboard.providers.simulated import SimulationProfile
from switchboard.router import Started
from switchboard.types import TextChunk
from usecase import make_app, request, run_all


class TestFallback:
    """Automatic mode falls back before the first output; pinned mode makes one attempt."""

    async def test_falls_back_and_charges_the_model_that_served(self, tmp_path: Path) -> None:
        """The first model fails before output: a FallbackNotice, the next model's output, and the
        charge is the serving model's."""
        probe = make_app(tmp_path / "probe")
        decision, _ = await probe.router.quote(request("f", "q"))
        await probe.close()
        first, second = decision.chain[0], decision.chain[1]
        app = make_app(tmp_path, simulation=SimulationProfile(tokens=8, fail_before_first=frozenset({first.id})))
        events, done = await run_all(app, request("f", "r1"))
        assert isinstance(events[0], Started)
        notice = events[1]
        assert isinstance(notice, FallbackNotice)
        assert (notice.from_model.id, notice.to_model.id) == (first.id, second.id)
        assert any(isinstance(e, TextChunk) for e in events)
        assert done.outcome.model.id == second.id
        assert done.credits_charged == second.price.cost(
            done.outcome.usage.input_tokens, done.outcome.usage.output_tokens
        )
        record = await app.ledger.get("f")
        assert record is not None
        assert (record.balance, record.held) == (500 - done.credits_charged, 0)
        await app.close()

    async def test_pinned_makes_one_attempt_and_charges_nothing(self, tmp_path: Path) -> None:
        """A pinned model that fails before output ends the run; nothing is charged."""
        app = make_app(tmp_path, simulation=SimulationProfile(tokens=8, fail_before_first=frozenset({"*"})))
        with pytest.raises(SwitchboardError) as err:
            await run_all(app, request("p", "r1", pinned_model_id="gpt-5.4-nano"))
        assert err.value.reason == "PROVIDER_FAILED"
        record = await app.ledger.get("p")
        assert record is not None
        assert (record.balance, record.held) == (500, 0)
        await app.close()
