"""Reliability over real channels and real processes: bounded money fields, bounded parsing,
settlement around failures and shutdown, lost holds, backend outages, workers, ports, TLS."""

from __future__ import annotations

import base64
from pathlib import Path

import grpc
import pytest
from conftest import ServerFactory, error_info
from switchboard.v1 import accounts_pb2, accounts_pb2_grpc, catalog_pb2, router_pb2, router_pb2_grpc

TEXT = catalog_pb2.MODALITY_TEXT
INT64_MAX = 2**63 - 1


def gen(account: str, request_id: str = "", **kw: object) -> router_pb2.GenerateRequest:
    kw.setdefault("modality", TEXT)
    return router_pb2.GenerateRequest(account_id=account, request_id=request_id, prompt="hello", **kw)  # type: ignore[arg-type]


async def reason_of(awaitable: object) -> tuple[grpc.StatusCode, str, dict[str, str]]:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await awaitable  # type: ignore[misc]
    info = error_info(err.value)
    return err.value.code(), info.reason, dict(info.metadata)


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:{tmp_path / 'money.db'}"
    return str(request.getfixturevalue("fresh_postgres"))


class TestMoneyBounds:
    """Money fields are bounded at the API and the ledger's sums stay exact integers."""

    async def test_huge_grant_is_refused_and_the_account_stays_sound(
        self, start_server: ServerFactory, ledger_url: str
    ) -> None:
        """A grant of 2^63-1 is INVALID_ARGUMENT naming `credits` and changes nothing; grants up
        to the limit work; the top-up balance has a ceiling; the journal sums to the balance."""
        handle, stub = await start_server(ledger=ledger_url)
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{handle.port}")
        acc = accounts_pb2_grpc.AccountServiceStub(channel)
        await acc.CreateAccount(accounts_pb2.CreateAccountRequest(account_id="m"), timeout=10)
        for credits in (INT64_MAX, 10**12 + 1):
            code, reason, meta = await reason_of(
                acc.GrantCredits(
                    accounts_pb2.GrantCreditsRequest(account_id="m", credits=credits, idempotency_key=f"k{credits}"),
                    timeout=10,
                )
            )
            assert (code, reason, meta.get("field")) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FIELD", "credits")
        for i in range(1000):
            req = accounts_pb2.GrantCreditsRequest(account_id="m", credits=10**12, idempotency_key=f"big-{i}")
            await acc.GrantCredits(req, timeout=10)
        req = accounts_pb2.GrantCreditsRequest(account_id="m", credits=1, idempotency_key="one-more")
        code, reason, _ = await reason_of(acc.GrantCredits(req, timeout=10))
        assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "BALANCE_LIMIT_EXCEEDED")
        got = (await acc.GetAccount(accounts_pb2.GetAccountRequest(account_id="m"), timeout=10)).account
        assert got.topup_credits == 10**15
        assert isinstance(got.balance, int)
        assert got.balance == 500 + 10**15
        async for frame in stub.Generate(gen("m", "r1", pinned_model_id="gpt-5.4-nano"), timeout=30):
            last = frame
        assert last.completion.balance_remaining == got.balance - last.completion.credits_charged
        led = handle.app.ledger
        total, _, _ = await led.totals("m")
        record = await led.get("m")
        assert record is not None
        assert total == record.balance
        await channel.close()

    async def test_huge_cost_cap_is_refused(self, stub: router_pb2_grpc.RouterServiceStub) -> None:
        """max_credits above 10^12 is INVALID_ARGUMENT naming the field."""
        req = router_pb2.SelectModelRequest(request=gen("c", max_credits=INT64_MAX))
        code, reason, meta = await reason_of(stub.SelectModel(req, timeout=10))
        assert (code, reason, meta["field"]) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_FIELD",
            "request.max_credits",
        )


def token(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


class TestBoundedParsing:
    """Caller-controlled JSON and page tokens are parsed within bounds: INVALID_ARGUMENT, never INTERNAL."""

    @pytest.mark.parametrize(
        ("options", "field"),
        [
            (
                router_pb2.GenerationOptions(structured_output=router_pb2.StructuredOutput(json_schema="[" * 2000)),
                "request.options.structured_output.json_schema",
            ),
            (
                router_pb2.GenerationOptions(tools=[router_pb2.Tool(name="t", parameters_json_schema='{"a":' * 2000)]),
                "request.options.tools[0].parameters_json_schema",
            ),
        ],
    )
    async def test_deep_json_is_invalid_field(
        self, stub: router_pb2_grpc.RouterServiceStub, options: router_pb2.GenerationOptions, field: str
    ) -> None:
        """A schema nested 2,000 deep is INVALID_FIELD naming it."""
        req = router_pb2.SelectModelRequest(request=gen("j", options=options))
        code, reason, meta = await reason_of(stub.SelectModel(req, timeout=10))
        assert (code, reason, meta["field"]) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FIELD", field)

    async def test_schema_at_the_depth_limit_is_accepted(self, stub: router_pb2_grpc.RouterServiceStub) -> None:
        """Nesting up to the limit (64) is fine, and brackets inside strings do not count."""
        schema = (
            '{"a":' * 63 + '{"s": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}' + "}" * 63
        )
        options = router_pb2.GenerationOptions(structured_output=router_pb2.StructuredOutput(json_schema=schema))
        resp = await stub.SelectModel(router_pb2.SelectModelRequest(request=gen("j", options=options)), timeout=10)
        assert resp.decision.model.id

    @pytest.mark.parametrize("text", ["seq:" + "9" * 30, "seq:99999999999999999999", "seq:-5", "seq: 5", "seq:+5"])
    async def test_bad_page_tokens(self, start_server: ServerFactory, text: str) -> None:
        """A huge number, a negative one or a sign is INVALID_PAGE_TOKEN."""
        handle, _ = await start_server()
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{handle.port}")
        acc = accounts_pb2_grpc.AccountServiceStub(channel)
        await acc.CreateAccount(accounts_pb2.CreateAccountRequest(account_id="p"), timeout=10)
        req = accounts_pb2.ListLedgerEntriesRequest(account_id="p", page_token=token(text))
        code, reason, meta = await reason_of(acc.ListLedgerEntries(req, timeout=10))
        assert (code, reason, meta["field"]) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_PAGE_TOKEN", "page_token")
        ok = await acc.ListLedgerEntries(
            accounts_pb2.ListLedgerEntriesRequest(account_id="p", page_token=token(f"seq:{2**63 - 1}")), timeout=10
        )
        assert list(ok.entries) == []
        await channel.close()
