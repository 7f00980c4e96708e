"""A bounded Generate load over real gRPC channels that records every call: when its decision and
its output frames arrived, its completion, its status and ErrorInfo reason. A poller reads
GetAccount meanwhile (requests in flight, and whether the account service answers INTERNAL)."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from dataclasses import dataclass, field

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from switchboard.v1 import accounts_pb2, accounts_pb2_grpc, catalog_pb2, router_pb2, router_pb2_grpc

RECONNECT_FAST = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 500),
]
"""Channel options: reconnect within half a second of a restarted replica coming back (gRPC's
default backoff grows to minutes, so a client would keep failing fast long after the restart)."""


@dataclass
class Call:
    """One Generate as the client saw it (times from time.monotonic())."""

    account: str
    request_id: str
    target: str
    start: float
    end: float = 0.0
    decision_at: float | None = None
    first_output_at: float | None = None
    last_output_at: float | None = None
    outputs: int = 0
    model: str = ""
    completed: bool = False
    credits_charged: int = 0
    code: str = "OK"
    reason: str = ""


@dataclass
class Poll:
    """One GetAccount answer (or its failure) during the load."""

    at: float
    account: str
    target: str
    code: str
    in_flight: int = 0


@dataclass
class Record:
    """Everything a load run saw."""

    calls: list[Call] = field(default_factory=list)
    polls: list[Poll] = field(default_factory=list)


def reason_of(exc: grpc.aio.AioRpcError) -> str:
    """The ErrorInfo reason of a Switchboard error, or '' when it carries none."""
    try:
        status = rpc_status.from_call(exc)
    except ValueError:
        return "<mismatched status>"
    if status is None:
        return ""
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return str(info.reason)
    return ""


class Load:
    """``per_account`` callers per account, each sending one Generate after another to the targets
    in turn until ``stop()``; every call has a deadline, so a run always ends."""

    def __init__(
        self,
        targets: list[str],
        accounts: list[str],
        per_account: int,
        call_timeout: float = 15.0,
        poll_interval: float = 0.25,
    ) -> None:
        self.targets = targets
        self.accounts = accounts
        self.per_account = per_account
        self.call_timeout = call_timeout
        self.poll_interval = poll_interval
        self.record = Record()
        self._stopping = asyncio.Event()
        self._channels = {t: grpc.aio.insecure_channel(t, options=RECONNECT_FAST) for t in targets}
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        for account in self.accounts:
            for i in range(self.per_account):
                self._tasks.append(asyncio.create_task(self._caller(account, i)))
            self._tasks.append(asyncio.create_task(self._poller(account)))

    async def stop(self) -> Record:
        """Send no new calls, wait for those running (bounded by their deadline), close channels."""
        self._stopping.set()
        await asyncio.gather(*self._tasks)
        for channel in self._channels.values():
            await channel.close()
        return self.record

    async def _caller(self, account: str, index: int) -> None:
        targets = itertools.cycle(self.targets[index % len(self.targets) :] + self.targets[: index % len(self.targets)])
        while not self._stopping.is_set():
            call = await self.generate(next(targets), account)
            if call.code != "OK":
                # Refused or failed: back off a little, so a limit or an outage is not a busy loop.
                await asyncio.sleep(0.05 if call.reason == "CONCURRENCY_LIMIT" else 0.2)

    async def generate(self, target: str, account: str) -> Call:
        stub = router_pb2_grpc.RouterServiceStub(self._channels[target])
        call = Call(account, f"chaos-{uuid.uuid4().hex[:16]}", target, time.monotonic())
        self.record.calls.append(call)
        request = router_pb2.GenerateRequest(
            account_id=account, request_id=call.request_id, modality=catalog_pb2.MODALITY_TEXT, prompt="Chaos"
        )
        try:
            async for frame in stub.Generate(request, timeout=self.call_timeout):
                now = time.monotonic()
                kind = frame.WhichOneof("event")
                if kind == "decision":
                    call.decision_at = now
                elif kind in ("delta", "artifact", "tool_call"):
                    call.first_output_at = call.first_output_at or now
                    call.last_output_at = now
                    call.outputs += 1
                elif kind == "completion":
                    call.completed = True
                    call.model = frame.completion.model_id
                    call.credits_charged = frame.completion.credits_charged
        except grpc.aio.AioRpcError as exc:
            call.code = exc.code().name
            call.reason = reason_of(exc)
        call.end = time.monotonic()
        return call

    async def _poller(self, account: str) -> None:
        for target in itertools.cycle(self.targets):
            if self._stopping.is_set():
                return
            stub = accounts_pb2_grpc.AccountServiceStub(self._channels[target])
            at = time.monotonic()
            try:
                reply = await stub.GetAccount(accounts_pb2.GetAccountRequest(account_id=account), timeout=5)
                self.record.polls.append(Poll(at, account, target, "OK", reply.account.requests_in_flight))
            except grpc.aio.AioRpcError as exc:
                self.record.polls.append(Poll(at, account, target, exc.code().name))
            await asyncio.sleep(self.poll_interval)


async def setup_accounts(target: str, accounts: list[str], plan: str, credits: int) -> None:
    """Create each account on ``plan`` and top it up (idempotent, so a rerun is harmless)."""
    async with grpc.aio.insecure_channel(target) as channel:
        stub = accounts_pb2_grpc.AccountServiceStub(channel)
        for account in accounts:
            try:
                await stub.CreateAccount(
                    accounts_pb2.CreateAccountRequest(account_id=account, plan_id=plan), timeout=10
                )
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.ALREADY_EXISTS:
                    raise
            await stub.GrantCredits(
                accounts_pb2.GrantCreditsRequest(
                    account_id=account, credits=credits, idempotency_key=f"seed-{account}"
                ),
                timeout=10,
            )
