"""The servicers: convert messages, call the core, convert back. Nothing else."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import grpc
import structlog
from google.protobuf import timestamp_pb2

from switchboard import convert, logs, usage
from switchboard.app import App
from switchboard.billing import Meter
from switchboard.errors import ExhaustedError, InvalidRequestError, NotFoundError
from switchboard.generation import FallbackNotice, GenerationEvent, Outcome
from switchboard.ledger import AccountRecord
from switchboard.types import (
    AccountState,
    Artifact,
    Decision,
    GenerationRequest,
    Modality,
    TextChunk,
    Tier,
    ToolCallEvent,
)
from switchboard.v1 import accounts_pb2, accounts_pb2_grpc, router_pb2, router_pb2_grpc

log = structlog.get_logger("switchboard")
_bind = logs.bind


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
        cooldown = getattr(app.health, "cooldown_remaining_ms", None)
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
                    cooldown_remaining_ms=cooldown(model.id) if cooldown is not None else 0,
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
        _, decision = await _decide(app, gen)
        simulated = app.providers.is_simulated(decision.model.id)
        return app.messages.select_response(decision, simulated)

    async def Generate(
        self, request: router_pb2.GenerateRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[router_pb2.GenerateResponse]:
        """Select, hold credits, call the provider, stream; settle the credits once at the end."""
        app = self.app  # streams in flight keep the app they started with across a reload
        app.stream_started()
        try:
            gen = convert.generation_request(request, app.settings.limits, need_content=True)
            account, decision = await _decide(app, gen)
            meter = app.billing.meter(account, decision, gen)
            try:
                await meter.open()
            except ExhaustedError as exc:
                if exc.reason != "INSUFFICIENT_CREDITS":
                    raise
                # The balance selection used was stale: decide again on the ledger's own figure.
                account, decision = await _decide(app, gen, fresh=True)
                meter = app.billing.meter(account, decision, gen)
                await meter.open()
            error: BaseException | None = None
            try:
                simulated = app.providers.is_simulated(decision.model.id)
                yield router_pb2.GenerateResponse(decision=app.messages.decision(decision, simulated))
                async for event in app.generator.run(decision, gen, gate=meter):
                    yield await _frame(event, gen, meter)
            except BaseException as exc:
                error = exc
                raise
            finally:
                await meter.close(error)
        finally:
            await app.stream_ended()


async def _decide(app: App, gen: GenerationRequest, *, fresh: bool = False) -> tuple[AccountState, Decision]:
    _bind(request_id=gen.request_id, account=gen.selection.account_id)
    account = await app.accounts.state(gen.selection.account_id, fresh=fresh)
    decision = app.selector.select(gen.selection, account, app.health)
    _bind(model=decision.model.id, mode=decision.mode.name.lower(), attempts=1)
    return account, decision


async def _frame(event: GenerationEvent, gen: GenerationRequest, meter: Meter) -> router_pb2.GenerateResponse:
    if isinstance(event, TextChunk):
        meter.saw(event)
        return router_pb2.GenerateResponse(delta=router_pb2.TextDelta(text=event.text))
    if isinstance(event, Artifact):
        meter.saw(event)
        return router_pb2.GenerateResponse(artifact=convert.artifact_pb(event))
    if isinstance(event, ToolCallEvent):
        meter.saw(event)
        return router_pb2.GenerateResponse(tool_call=convert.tool_call_pb(event))
    if isinstance(event, FallbackNotice):
        log.warning(
            "fallback",
            **logs.call_fields(),
            from_model=event.from_model.id,
            to_model=event.to_model.id,
            reason=event.reason,
            attempt=event.attempt,
        )
        _bind(model=event.to_model.id, attempts=event.attempt)
        return router_pb2.GenerateResponse(
            fallback=router_pb2.Fallback(
                from_model_id=event.from_model.id,
                to_model_id=event.to_model.id,
                reason=event.reason,
                message=event.message,
                attempt=event.attempt,
            )
        )
    return await _completion(event, gen, meter)


async def _completion(outcome: Outcome, gen: GenerationRequest, meter: Meter) -> router_pb2.GenerateResponse:
    await meter.complete(outcome.credits, outcome.usage)
    _bind(model=outcome.model.id, attempts=outcome.attempts, credits=meter.charged)
    completion = router_pb2.Completion(
        model_id=outcome.model.id,
        finish_reason=int(outcome.finish_reason),
        usage=router_pb2.Usage(input_tokens=outcome.usage.input_tokens, output_tokens=outcome.usage.output_tokens),
        credits_charged=meter.charged,
        attempts=outcome.attempts,
        simulated=outcome.simulated,
        request_id=gen.request_id,
    )
    if meter.balance is not None:
        completion.balance_remaining = meter.balance
    return router_pb2.GenerateResponse(completion=completion)


# ---------------------------------------------------------------- AccountService

_MAX_PAGE = 500


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
        led = self.app.ledger
        record = await led.call(led.ledger.create_account, account_id, plan_id)
        return accounts_pb2.CreateAccountResponse(account=await self._account(record))

    async def UpdateAccountPlan(
        self, request: accounts_pb2.UpdateAccountPlanRequest, context: grpc.aio.ServicerContext
    ) -> accounts_pb2.UpdateAccountPlanResponse:
        """Move an account to another plan."""
        account_id = _required(request.account_id, "account_id")
        plan_id = _required(request.plan_id, "plan_id")
        led = self.app.ledger
        record = await led.call(led.ledger.set_plan, account_id, plan_id)
        return accounts_pb2.UpdateAccountPlanResponse(account=await self._account(record))

    async def GetAccount(
        self, request: accounts_pb2.GetAccountRequest, context: grpc.aio.ServicerContext
    ) -> accounts_pb2.GetAccountResponse:
        """An account's plan, balance and period."""
        account_id = _required(request.account_id, "account_id")
        led = self.app.ledger
        record = await led.call(led.ledger.get, account_id)
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
        if request.credits <= 0:
            raise InvalidRequestError("INVALID_FIELD", "credits: must be positive", {"field": "credits"})
        led = self.app.ledger
        record, applied = await led.call(led.ledger.top_up, account_id, request.credits, key, request.note)
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
        led = self.app.ledger
        entries = await led.call(led.ledger.entries, account_id, after, size + 1)
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
    if not token:
        return 0
    try:
        text = base64.urlsafe_b64decode(token.encode()).decode()
        if not text.startswith("seq:"):
            raise ValueError(text)
        return int(text[4:])
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequestError(
            "INVALID_PAGE_TOKEN", "page_token is not one this server issued", {"field": "page_token"}
        ) from None
