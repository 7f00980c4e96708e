"""Task-aware defaults: a request's task picks the plan's starting tier; the decision says which rule
chose it; preferred_tier wins; credits still step the choice down; no task behaves as before."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
import yaml
from conftest import ServerFactory, error_info
from switchboard import catalog
from switchboard.catalog import load_catalog
from switchboard.errors import ConfigError
from switchboard.selection import Selector
from switchboard.types import AccountState, Modality, Requirements, SelectionRequest, Task, Tier, TierRule
from switchboard.v1 import accounts_pb2, accounts_pb2_grpc, catalog_pb2, router_pb2

CATALOG = load_catalog(None)
SELECTOR = Selector(CATALOG)


def decide(plan: str, task: Task | None, balance: int | None = None, **kw: object):  # type: ignore[no-untyped-def]
    req = SelectionRequest("acct", Requirements(Modality.TEXT, frozenset()), task=task, **kw)  # type: ignore[arg-type]
    return SELECTOR.select(req, AccountState("acct", CATALOG.plans[plan], balance))


class TestStartTier:
    """The default config's mapping, after the model page's "best for" column."""

    @pytest.mark.parametrize(
        ("plan", "task", "tier"),
        [
            ("pro", Task.FORMATTING, Tier.LITE),
            ("pro", Task.CLASSIFICATION, Tier.LITE),
            ("pro", Task.SUMMARY, Tier.LITE),
            ("pro", Task.CHAT, Tier.STANDARD),
            ("pro", Task.CODING, Tier.STANDARD),
            ("pro", Task.REASONING, Tier.ADVANCED),
            ("pro", Task.WRITING, Tier.ADVANCED),
            ("free", Task.CHAT, Tier.LITE),
            ("free", Task.REASONING, Tier.STANDARD),
            ("business", Task.SUMMARY, Tier.LITE),
            ("business", Task.CODING, Tier.ADVANCED),
        ],
    )
    def test_task_picks_the_plans_tier(self, plan: str, task: Task, tier: Tier) -> None:
        """The decision starts at the plan's tier for the task, its model is of that tier, and the rule says TASK."""
        d = decide(plan, task)
        assert (d.start_tier, d.tier_rule, d.model.tier) == (tier, TierRule.TASK, tier)

    def test_no_task_behaves_as_before(self) -> None:
        """Without a task the plan's default tier applies (rule PLAN_DEFAULT), the same model as before."""
        for plan, tier in (("free", Tier.LITE), ("pro", Tier.STANDARD), ("business", Tier.ADVANCED)):
            d = decide(plan, None)
            assert (d.start_tier, d.tier_rule) == (tier, TierRule.PLAN_DEFAULT)
        assert decide("business", None).model.id == "claude-sonnet-4-6"

    def test_preferred_tier_wins(self) -> None:
        """preferred_tier beats the task; the rule says PREFERRED_TIER."""
        d = decide("pro", Task.FORMATTING, preferred_tier=Tier.ADVANCED)
        assert (d.start_tier, d.tier_rule, d.model.tier) == (Tier.ADVANCED, TierRule.PREFERRED_TIER, Tier.ADVANCED)

    def test_credits_step_down(self) -> None:
        """A reasoning task on pro starts at Advanced, but a balance of 5 affords only Standard and Lite."""
        d = decide("pro", Task.REASONING, balance=5)
        assert (d.start_tier, d.tier_rule) == (Tier.ADVANCED, TierRule.TASK)
        assert d.model.tier is Tier.STANDARD

    def test_same_request_different_rule_is_not_confused(self) -> None:
        """Two requests that start at the same tier by different rules keep their own rule (the decision cache)."""
        assert decide("pro", Task.CHAT).tier_rule is TierRule.TASK
        assert decide("pro", None).tier_rule is TierRule.PLAN_DEFAULT
        assert decide("pro", Task.CHAT).tier_rule is TierRule.TASK

    def test_other_modalities_have_no_task_map(self) -> None:
        """An image request with a task starts from the plan's image default."""
        req = SelectionRequest("acct", Requirements(Modality.IMAGE, frozenset()), task=Task.SUMMARY)
        d = SELECTOR.select(req, AccountState("acct", CATALOG.plans["pro"], None))
        assert (d.start_tier, d.tier_rule) == (Tier.STANDARD, TierRule.PLAN_DEFAULT)


class TestConfig:
    """The task map is validated at load."""

    def _config(self, tmp_path: Path, task_tiers: list[dict[str, str]]) -> Path:
        raw = yaml.safe_load((Path(catalog.__file__).parent / "config" / "default.yaml").read_text())
        raw["plans"][0]["defaults"][0]["taskTiers"] = task_tiers
        path = tmp_path / "c.yaml"
        path.write_text(yaml.safe_dump(raw))
        return path

    def test_a_task_twice_is_refused(self, tmp_path: Path) -> None:
        twice = [{"task": "TASK_CHAT", "tier": "TIER_LITE"}, {"task": "TASK_CHAT", "tier": "TIER_ADVANCED"}]
        with pytest.raises(ConfigError, match="a second entry for CHAT"):
            load_catalog(str(self._config(tmp_path, twice)))

    def test_a_task_without_tier_is_refused(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match="needs a task and a tier"):
            load_catalog(str(self._config(tmp_path, [{"task": "TASK_CHAT"}])))


class TestOverTheWire:
    """task on SelectModel and Generate."""

    async def test_select_and_generate(self, start_server: ServerFactory) -> None:
        """A summary on pro is quoted and served on Lite with tier_rule TASK; no task is PLAN_DEFAULT; a bad value is INVALID_ENUM_VALUE."""
        handle, stub = await start_server()

        async with grpc.aio.insecure_channel(f"127.0.0.1:{handle.port}") as channel:
            await accounts_pb2_grpc.AccountServiceStub(channel).CreateAccount(
                accounts_pb2.CreateAccountRequest(account_id="p1", plan_id="pro")
            )
        req = router_pb2.GenerateRequest(
            account_id="p1", modality=catalog_pb2.MODALITY_TEXT, prompt="Summarise this", task=catalog_pb2.TASK_SUMMARY
        )
        d = (await stub.SelectModel(router_pb2.SelectModelRequest(request=req))).decision
        assert (d.start_tier, d.tier_rule, d.model.tier) == (
            catalog_pb2.TIER_LITE,
            router_pb2.TIER_RULE_TASK,
            catalog_pb2.TIER_LITE,
        )
        frames = [f async for f in stub.Generate(req)]
        assert frames[0].decision.model.id == d.model.id
        req.ClearField("task")
        plain = (await stub.SelectModel(router_pb2.SelectModelRequest(request=req))).decision
        assert (plain.start_tier, plain.tier_rule) == (catalog_pb2.TIER_STANDARD, router_pb2.TIER_RULE_PLAN_DEFAULT)
        req.task = 42  # type: ignore[assignment]
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.SelectModel(router_pb2.SelectModelRequest(request=req))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error_info(err.value).reason == "INVALID_ENUM_VALUE"
        pinned = router_pb2.GenerateRequest(
            account_id="p1", modality=catalog_pb2.MODALITY_TEXT, prompt="x", pinned_model_id="gpt-5.4", task=1
        )
        d = (await stub.SelectModel(router_pb2.SelectModelRequest(request=pinned))).decision
        assert d.tier_rule == router_pb2.TIER_RULE_UNSPECIFIED
