"""The servicers: convert messages, call the core, convert back. Nothing else."""

from __future__ import annotations

import base64
import contextlib
import re
from collections.abc import AsyncIterator

import grpc
import structlog
from google.protobuf import timestamp_pb2

from switchboard import convert, logs, usage
from switchboard.app import App
from switchboard.errors import InvalidRequestError, NotFoundError
from switchboard.generation import FallbackNotice
from switchboard.ledger import AccountRecord
from switchboard.router import Completed, RunEvent, Started
from switchboard.types import Artifact, Citation, Modality, ReasoningChunk, TextChunk, Tier, ToolCallEvent
from switchboard.v1 import accounts_pb2, accounts_pb2_grpc, router_pb2, router_pb2_grpc

log = structlog.get_logger("switchboard")


class RouterService(router_pb2_grpc.RouterServiceServicer):
    """ListModels, SelectModel and Generate over one App."""

    def __init__(self, app: App) -> None:
        self.app = app

    async def ListModels(
        self, request: router_pb2.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> router_pb2.ListModelsResponse:
        """The catalog, filtered, with each model's serving state."""
        modality = convert.enum_value(Modality, request.modality, "modality", required=False)
        tier = convert.enum_value(Tier, request.tier, "tier", required=False)
        provider = request.provider.strip().lower()
        app = self.app
        listings = []
        for model in app.catalog.models:
            if modality and model.modality is not modality:
                continue
            if tier and model.tier is not tier:
                continue
            if provider and model.provider.lower() != provider:
                continue
            available = app.health.is_available(model.id)
            listings.append(
                router_pb2.ModelListing(
                    model=app.messages.model(model.id),
                    health=router_pb2.MODEL_HEALTH_SERVING if available else router_pb2.MODEL_HEALTH_COOLING_DOWN,
                    simulated=app.providers.is_simulated(model.id),
                    cooldown_remaining_ms=app.health.cooldown_remaining_ms(model.id),
                )
            )
        return router_pb2.ListModelsResponse(models=listings)

    async def SelectModel(
        self, request: router_pb2.SelectModelRequest, context: grpc.aio.ServicerContext
    ) -> router_pb2.SelectModelResponse:
        """The decision Generate would make; no side effects."""
        if not request.HasField("request"):
            raise InvalidRequestError("FIELD_REQUIRED", "request is required", {"field": "request"})
        app = self.app  # one app for the whole call, even when a reload swaps it meanwhile
        gen = convert.generation_request(request.request, app.settings.limits, need_content=False, field="request.")
        decision, simulated = await app.router.quote(gen)
        return app.messages.select_response(decision, simulated)

    async def Generate(
        self, request: router_pb2.GenerateRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[router_pb2.GenerateResponse]:
        """Convert the request, run it, convert each event; the completion is built before its charge."""
        app = self.app  # streams in flight keep the app they started with across a reload
        app.stream_started()
        try:
            gen = convert.generation_request(request, app.settings.limits, need_content=True)
            async with contextlib.aclosing(app.router.run(gen)) as run:  # settles however this ends
                async for event in run:
                    if isinstance(event, Completed):
                        reply = convert.completion_pb(event.outcome, event.request_id, event.credits_charged)
                        await event.commit()
                        if event.balance_remaining is not None:
                            reply.completion.balance_remaining = event.balance_remaining
                        yield reply
                    else:
                        yield _frame(app, event)
        finally:
            await app.stream_ended()


def _frame(app: App, event: RunEvent) -> router_pb2.GenerateResponse:
    if isinstance(event, TextChunk):
        return router_pb2.GenerateResponse(delta=router_pb2.TextDelta(text=event.text))
    if isinstance(event, Artifact):
        return router_pb2.GenerateResponse(artifact=convert.artifact_pb(event))
    if isinstance(event, ToolCallEvent):
        return router_pb2.GenerateResponse(tool_call=convert.tool_call_pb(event))
    if isinstance(event, ReasoningChunk):
        return convert.reasoning_pb(event)
    if isinstance(event, Citation):
        return convert.citation_pb(event)
    if isinstance(event, Started):
        return router_pb2.GenerateResponse(decision=app.messages.decision(event.decision, event.simulated))
    assert isinstance(event, FallbackNotice)
    log.warning(
        "fallback",
        **logs.call_fields(),
        from_model=event.from_model.id,
        to_model=event.to_model.id,
        reason=event.reason,
        attempt=event.attempt,
    )
    return router_pb2.GenerateResponse(
        fallback=router_pb2.Fallback(
            from_model_id=event.from_model.id,
            to_model_id=event.to_model.id,
            reason=event.reason,
            message=event.message,
            attempt=event.attempt,
        )
    )


# ---------------------------------------------------------------- AccountService

_MAX_PAGE = 500
_MAX_SEQUENCE = 2**63 - 1
_TOKEN_DIGITS = re.compile(r"[0-9]{1,19}")


def _required(value: str, field: str) -> str:
    value = value.strip()
    if not value:
        raise InvalidRequestError("FIELD_REQUIRED", f"{field} is required", {"field": field})
    if len(value) > 256:
        raise InvalidRequestError("INVALID_FIELD", f"{field}: longer than 256 characters", {"field": field})
    return value


def _timestamp(seconds: int) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=seconds)


class AccountService(accounts_pb2_grpc.AccountServiceServicer):
    """Accounts, plans, top-ups and the ledger, for the platform's admin side."""

    def __init__(self, app: App) -> None:
        self.app = app

    async def _account(self, record: AccountRecord) -> accounts_pb2.Account:
        return accounts_pb2.Account(
            account_id=record.account_id,
            plan_id=record.plan_id,
            balance=record.balance,
            allowance_credits=record.allowance,
            topup_credits=record.topup,
            held_credits=record.held,
            period_start=_timestamp(record.period_start),
            period_end=_timestamp(record.period_end),
            requests_in_flight=await self.app.limiter.in_flight(record.account_id),
        )

    async def CreateAccount(
        self, request: accounts_pb2.CreateAccountRequest, context: grpc.aio.ServicerContext
    ) -> accounts_pb2.CreateAccountResponse:
        """Create an account with its first allowance."""
        account_id = _required(request.account_id, "account_id")
        plan_id = request.plan_id.strip() or self.app.catalog.default_plan_id
        record = await self.app.ledger.create_account(account_id, plan_id)
        return accounts_pb2.CreateAccountResponse(account=await self._account(record))

    async def UpdateAccountPlan(
        self, request: accounts_pb2.UpdateAccountPlanRequest, context: grpc.aio.ServicerContext
    ) -> accounts_pb2.UpdateAccountPlanResponse:
        """Move an account to another plan."""
        account_id = _required(request.account_id, "account_id")
        plan_id = _required(request.plan_id, "plan_id")
        record = await self.app.ledger.set_plan(account_id, plan_id)
        return accounts_pb2.UpdateAccountPlanResponse(account=await self._account(record))

    async def GetAccount(
        self, request: accounts_pb2.GetAccountRequest, context: grpc.aio.ServicerContext
    ) -> accounts_pb2.GetAccountResponse:
        """An account's plan, balance and period."""
        account_id = _required(request.account_id, "account_id")
        record = await self.app.ledger.get(account_id)
        if record is None:
            raise NotFoundError(
                "ACCOUNT_NOT_FOUND", f"no account has the id {account_id!r}", {"account_id": account_id}
            )
        return accounts_pb2.GetAccountResponse(account=await self._account(record))

    async def GrantCredits(
        self, request: accounts_pb2.GrantCreditsRequest, context: grpc.aio.ServicerContext
    ) -> accounts_pb2.GrantCreditsResponse:
        """Add purchased credits once per idempotency key."""
        account_id = _required(request.account_id, "account_id")
        key = _required(request.idempotency_key, "idempotency_key")
        credits = convert.credits(request.credits, "credits", minimum=1)
        record, applied = await self.app.ledger.top_up(account_id, credits, key, request.note)
        return accounts_pb2.GrantCreditsResponse(account=await self._account(record), applied=applied)

    async def ListLedgerEntries(
        self, request: accounts_pb2.ListLedgerEntriesRequest, context: grpc.aio.ServicerContext
    ) -> accounts_pb2.ListLedgerEntriesResponse:
        """One page of an account's ledger, oldest first."""
        account_id = _required(request.account_id, "account_id")
        if request.page_size < 0:
            raise InvalidRequestError("INVALID_FIELD", "page_size: cannot be negative", {"field": "page_size"})
        size = min(request.page_size or 50, _MAX_PAGE)
        after = _decode_token(request.page_token)
        entries = await self.app.ledger.entries(account_id, after, size + 1)
        more = len(entries) > size
        entries = entries[:size]
        out = [
            accounts_pb2.LedgerEntry(
                sequence=e.sequence,
                account_id=e.account_id,
                kind=int(e.kind),
                amount=e.amount,
                allowance_delta=e.allowance_delta,
                topup_delta=e.topup_delta,
                credits=e.credits,
                request_id=e.request_id,
                idempotency_key=e.idempotency_key,
                note=e.note,
                create_time=timestamp_pb2.Timestamp(
                    seconds=e.created_ms // 1000, nanos=(e.created_ms % 1000) * 1_000_000
                ),
            )
            for e in entries
        ]
        token = _encode_token(entries[-1].sequence) if more and entries else ""
        return accounts_pb2.ListLedgerEntriesResponse(entries=out, next_page_token=token)

    async def GetUsage(
        self, request: accounts_pb2.GetUsageRequest, context: grpc.aio.ServicerContext
    ) -> accounts_pb2.GetUsageResponse:
        """Requests, credits and tokens of a time range, grouped, from the ledger."""
        query = convert.usage_query(request)
        led = self.app.ledger
        return convert.usage_response(await led.call(usage.usage, led.ledger, query))


def _encode_token(sequence: int) -> str:
    return base64.urlsafe_b64encode(f"seq:{sequence}".encode()).decode()


def _decode_token(token: str) -> int:
    """The sequence number a page token carries: ``seq:N`` with N a plain decimal from 0 to
    2^63-1, as this server issues them. Anything else (``seq:-5``, a sign, spaces, a number too
    big for a sequence) is INVALID_PAGE_TOKEN."""
    if not token:
        return 0
    try:
        text = base64.urlsafe_b64decode(token.encode()).decode()
    except (ValueError, UnicodeDecodeError):
        text = ""
    digits = text.removeprefix("seq:")
    if not text.startswith("seq:") or not _TOKEN_DIGITS.fullmatch(digits) or int(digits) > _MAX_SEQUENCE:
        raise InvalidRequestError(
            "INVALID_PAGE_TOKEN", "page_token is not one this server issued", {"field": "page_token"}
        )
    return int(digits)
