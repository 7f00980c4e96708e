"""The ``switchboard`` command: ``serve`` runs the server; ``models``, ``select`` and ``generate``
call a running one so a person can try it without writing code; ``keys new`` makes an API key;
``migrate`` creates or upgrades the ledger's schema."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime

import grpc
from google.protobuf import json_format, timestamp_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from switchboard import auth
from switchboard.errors import ConfigError
from switchboard.settings import Settings, add_serve_arguments, settings_from_args
from switchboard.v1 import accounts_pb2, accounts_pb2_grpc, catalog_pb2, router_pb2, router_pb2_grpc

DEFAULT_TARGET = "127.0.0.1:50051"


def _enum_choice(enum: object, prefix: str) -> list[str]:
    names: list[str] = list(enum.keys())  # type: ignore[attr-defined]
    return [n.removeprefix(prefix).lower() for n in names if not n.endswith("_UNSPECIFIED")]


def _request_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--account", default="cli-user", help="account id (default: cli-user)")
    p.add_argument("--modality", choices=_enum_choice(catalog_pb2.Modality, "MODALITY_"), default="text")
    p.add_argument(
        "--capability",
        action="append",
        default=[],
        metavar="NAME",
        choices=_enum_choice(catalog_pb2.Capability, "CAPABILITY_"),
        help="required capability (repeatable)",
    )
    p.add_argument(
        "--attach",
        action="append",
        default=[],
        metavar="MIME[=FILE]",
        help="attachment by MIME type, optionally with a file to send (repeatable)",
    )
    p.add_argument("--web-search", action="store_true")
    p.add_argument("--json-schema", help="structured output: a JSON Schema (text)")
    p.add_argument("--reasoning", action="store_true")
    p.add_argument("--language", default="", help="speech language (BCP-47)")
    p.add_argument("--pin", default="", metavar="MODEL_ID", help="use exactly this model")
    p.add_argument("--tier", choices=_enum_choice(catalog_pb2.Tier, "TIER_"), help="preferred tier")
    p.add_argument(
        "--task", choices=_enum_choice(catalog_pb2.Task, "TASK_"), help="what the request is for (picks the start tier)"
    )
    p.add_argument("--max-credits", type=int, help="cost cap")


def _build_request(args: argparse.Namespace, prompt: str) -> router_pb2.GenerateRequest:
    req = router_pb2.GenerateRequest(
        account_id=args.account,
        modality=catalog_pb2.Modality.Value("MODALITY_" + args.modality.upper()),
        required_capabilities=[catalog_pb2.Capability.Value("CAPABILITY_" + c.upper()) for c in args.capability],
        prompt=prompt,
        pinned_model_id=args.pin,
    )
    for spec in args.attach:
        mime, _, path = spec.partition("=")
        attachment = req.attachments.add(mime_type=mime)
        if path:
            with open(path, "rb") as fh:
                attachment.data = fh.read()
        elif args.command == "generate":
            attachment.uri = "cli://no-file"
    req.options.web_search = args.web_search
    req.options.reasoning = args.reasoning
    req.options.language = args.language
    if args.json_schema:
        req.options.structured_output.json_schema = args.json_schema
    if args.tier:
        req.preferred_tier = catalog_pb2.Tier.Value("TIER_" + args.tier.upper())
    if args.task:
        req.task = catalog_pb2.Task.Value("TASK_" + args.task.upper())
    if args.max_credits is not None:
        req.max_credits = args.max_credits
    return req


def _error(exc: grpc.aio.AioRpcError) -> int:
    print(f"error: {exc.code().name}: {exc.details()}", file=sys.stderr)
    status = rpc_status.from_call(exc)
    for detail in status.details if status else []:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            print(f"reason: {info.reason}", file=sys.stderr)
            for key, value in sorted(info.metadata.items()):
                print(f"  {key}: {value}", file=sys.stderr)
    return 1


def _channel(args: argparse.Namespace) -> grpc.aio.Channel:
    """A channel to ``--target``: TLS when a CA or client certificate is given, plus the API key."""
    tls = args.tls_ca or args.tls_cert
    if not tls:
        if args.api_key:
            # gRPC sends call credentials only over TLS; on plaintext the key goes as plain metadata.
            return grpc.aio.insecure_channel(args.target, interceptors=[_KeyInterceptor(args.api_key)])
        return grpc.aio.insecure_channel(args.target)

    def read(path: str | None) -> bytes | None:
        if not path:
            return None
        with open(path, "rb") as fh:
            return fh.read()

    creds = grpc.ssl_channel_credentials(read(args.tls_ca), read(args.tls_key), read(args.tls_cert))
    if args.api_key:
        creds = grpc.composite_channel_credentials(creds, grpc.access_token_call_credentials(args.api_key))
    return grpc.aio.secure_channel(args.target, creds)


class _KeyInterceptor(grpc.aio.UnaryUnaryClientInterceptor, grpc.aio.UnaryStreamClientInterceptor):
    """Adds ``authorization: Bearer <key>`` to every call on a plaintext channel."""

    def __init__(self, key: str) -> None:
        self.key = key

    def _details(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        metadata = grpc.aio.Metadata(*(details.metadata or ()), ("authorization", f"Bearer {self.key}"))
        return details._replace(metadata=metadata)

    async def intercept_unary_unary(self, continuation, details, request):  # type: ignore[no-untyped-def]
        return await continuation(self._details(details), request)

    async def intercept_unary_stream(self, continuation, details, request):  # type: ignore[no-untyped-def]
        return await continuation(self._details(details), request)


def _keys(args: argparse.Namespace) -> int:
    key = auth.new_key()
    role = "API_KEY_ROLE_" + args.role.upper()
    print(key)
    print("# Give the key above to the client (it is shown once). Add this to the config's api_keys:", file=sys.stderr)
    print(f"- {{name: {args.name}, sha256: {auth.digest(key)}, role: {role}}}")
    return 0


def _migrate(url: str) -> int:
    from switchboard.logs import configure_logging  # noqa: PLC0415 - keeps client commands light
    from switchboard.migrations import LATEST  # noqa: PLC0415
    from switchboard.stores import open_store  # noqa: PLC0415

    configure_logging("json")
    try:
        store = open_store(url)
    except ConfigError as exc:
        print(f"switchboard: {exc}", file=sys.stderr)
        return 2
    store.close()
    done = store.migrated
    if done is None or done.before == done.after:
        print(f"ledger schema: version {LATEST}, up to date")
    else:
        print(f"ledger schema: version {done.before} -> {done.after}")
    return 0


async def _client(args: argparse.Namespace) -> int:
    async with _channel(args) as channel:
        stub = router_pb2_grpc.RouterServiceStub(channel)
        try:
            if args.command == "usage":
                return await _usage(accounts_pb2_grpc.AccountServiceStub(channel), args)
            if args.command == "models":
                return await _models(stub, args)
            if args.command == "select":
                resp = await stub.SelectModel(
                    router_pb2.SelectModelRequest(request=_build_request(args, args.prompt)), timeout=args.timeout
                )
                print(json_format.MessageToJson(resp.decision) if args.json else _describe(resp.decision))
                return 0
            return await _generate(stub, args)
        except grpc.aio.AioRpcError as exc:
            return _error(exc)


def _day_start(text: str) -> timestamp_pb2.Timestamp:
    day = datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
    return timestamp_pb2.Timestamp(seconds=int(day.timestamp()))


async def _usage(stub: accounts_pb2_grpc.AccountServiceStub, args: argparse.Namespace) -> int:
    """Every page of GetUsage for the account (or, with --model and no account, across accounts)."""
    req = accounts_pb2.GetUsageRequest(
        account_id=args.account_id or "",
        model_id=args.model or "",
        group_by=accounts_pb2.UsageGroupBy.Value("USAGE_GROUP_BY_" + args.by.upper()),
        page_size=500,
    )
    if args.since:
        req.start_time.CopyFrom(args.since)
    if args.until:
        req.end_time.CopyFrom(args.until)
    pages = [await stub.GetUsage(req, timeout=args.timeout)]
    while pages[-1].next_page_token:
        req.page_token = pages[-1].next_page_token
        pages.append(await stub.GetUsage(req, timeout=args.timeout))
    first = pages[0]
    if args.json:
        groups = [json_format.MessageToDict(g) for page in pages for g in page.groups]
        whole = json_format.MessageToDict(first)
        whole["groups"] = groups
        whole.pop("nextPageToken", None)
        print(json.dumps(whole, indent=2))
        return 0
    start, end = first.start_time.ToDatetime(UTC), first.end_time.ToDatetime(UTC)
    print(
        f"usage of {args.account_id or 'every account'}{' on ' + args.model if args.model else ''}"
        f" from {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC"
    )
    print(f"{args.by:42} {'requests':>9} {'credits':>9} {'tokens in':>10} {'tokens out':>10}")
    for page in pages:
        for g in page.groups:
            key = {
                "model": g.model_id or "(none)",
                "account": g.account_id,
                "day": g.day,
                "modality": catalog_pb2.Modality.Name(g.modality)[9:].lower(),
                "tier": catalog_pb2.Tier.Name(g.tier)[5:].lower(),
            }[args.by]
            print(f"{key:42} {g.requests:>9} {g.credits:>9} {g.input_tokens:>10} {g.output_tokens:>10}")
    t = first.total
    print(f"{'total':42} {t.requests:>9} {t.credits:>9} {t.input_tokens:>10} {t.output_tokens:>10}")
    if args.account_id:
        print(
            f"top-ups {first.top_up_credits}, allowance granted {first.allowance_granted_credits},"
            f" allowance expired {first.allowance_expired_credits}"
        )
    return 0


async def _models(stub: router_pb2_grpc.RouterServiceStub, args: argparse.Namespace) -> int:
    req = router_pb2.ListModelsRequest(provider=args.provider or "")
    if args.modality:
        req.modality = catalog_pb2.Modality.Value("MODALITY_" + args.modality.upper())
    resp = await stub.ListModels(req, timeout=args.timeout)
    if args.json:
        print(json_format.MessageToJson(resp))
        return 0
    for item in resp.models:
        m = item.model
        flags = (" simulated" if item.simulated else "") + (
            " cooling-down" if item.health == router_pb2.MODEL_HEALTH_COOLING_DOWN else ""
        )
        print(
            f"{m.id:42} {catalog_pb2.Modality.Name(m.modality)[9:].lower():7} "
            f"{catalog_pb2.Tier.Name(m.tier)[5:].lower():9} {m.price.credits_per_request:>4} cr  {m.provider}{flags}"
        )
    return 0


def _describe(d: router_pb2.Decision) -> str:
    lines = [
        f"model:     {d.model.id} ({catalog_pb2.Tier.Name(d.model.tier)[5:].lower()}, {d.model.provider})",
        f"mode:      {router_pb2.SelectionMode.Name(d.mode)[15:].lower()}",
        f"tier:      {catalog_pb2.Tier.Name(d.start_tier)[5:].lower()} to start"
        + (f" (by {router_pb2.TierRule.Name(d.tier_rule)[10:].lower().replace('_', ' ')})" if d.tier_rule else ""),
        f"credits:   {d.estimated_credits}",
        f"fallbacks: {', '.join(d.fallback_model_ids) or '-'}",
    ]
    if d.simulated:
        lines.append("note:      served by the simulated provider")
    return "\n".join(lines)


async def _generate(stub: router_pb2_grpc.RouterServiceStub, args: argparse.Namespace) -> int:
    call = stub.Generate(_build_request(args, args.prompt), timeout=args.timeout)
    async for frame in call:
        kind = frame.WhichOneof("event")
        if kind == "decision":
            tag = " [simulated]" if frame.decision.simulated else ""
            print(f"# model {frame.decision.model.id}{tag}", file=sys.stderr)
        elif kind == "fallback":
            print(
                f"# {frame.fallback.from_model_id} failed ({frame.fallback.reason}); "
                f"trying {frame.fallback.to_model_id}",
                file=sys.stderr,
            )
        elif kind == "delta":
            print(frame.delta.text, end="", flush=True)
        elif kind == "artifact":
            out = args.output or f"switchboard-output.{frame.artifact.mime_type.split('/')[-1]}"
            with open(out, "wb") as fh:  # noqa: ASYNC230 - a one-off write at the end of a CLI stream
                fh.write(frame.artifact.data)
            print(f"# wrote {frame.artifact.mime_type} to {out}", file=sys.stderr)
        elif kind == "tool_call":
            print(f"# tool call {frame.tool_call.name}({frame.tool_call.arguments_json})", file=sys.stderr)
        elif kind == "completion":
            c = frame.completion
            print(
                f"\n# done: {router_pb2.FinishReason.Name(c.finish_reason)[14:].lower()}, "
                f"{c.usage.input_tokens}+{c.usage.output_tokens} tokens, {c.credits_charged} credits"
                + (f", balance {c.balance_remaining}" if c.HasField("balance_remaining") else ""),
                file=sys.stderr,
            )
    return 0


def _client_arguments(p: argparse.ArgumentParser) -> None:
    """The target, deadline, output and credential flags of every client command."""
    p.add_argument("--target", default=os.environ.get("SWITCHBOARD_TARGET", DEFAULT_TARGET))
    p.add_argument("--timeout", type=float, default=60.0, help="deadline in seconds")
    p.add_argument("--json", action="store_true", help="print the response as JSON")
    p.add_argument("--api-key", default=os.environ.get("SWITCHBOARD_API_KEY"), help="sent as a Bearer token")
    p.add_argument("--tls-ca", help="PEM CA bundle that signed the server's certificate: use TLS")
    p.add_argument("--tls-cert", help="PEM client certificate (mutual TLS)")
    p.add_argument("--tls-key", help="PEM private key of --tls-cert")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``switchboard`` command."""
    parser = argparse.ArgumentParser(prog="switchboard", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the server")
    add_serve_arguments(serve, os.environ)
    for name, helptext in (
        ("models", "list the catalog"),
        ("select", "show the decision for a request"),
        ("generate", "stream a generation to the terminal"),
    ):
        p = sub.add_parser(name, help=helptext)
        _client_arguments(p)
        if name == "models":
            p.add_argument("--modality", choices=_enum_choice(catalog_pb2.Modality, "MODALITY_"))
            p.add_argument("--provider")
        else:
            p.add_argument("prompt", nargs="?", default="Hello")
            _request_arguments(p)
            p.add_argument("--output", help="generate: where to write an image, video or audio artifact")
    use = sub.add_parser("usage", help="what an account spent: requests, credits and tokens (admin key)")
    use.add_argument("account_id", nargs="?", default="", help="the account (omit with --model: every account)")
    use.add_argument("--model", help="only this model (without an account: this model across accounts)")
    use.add_argument("--by", choices=("model", "modality", "tier", "day", "account"), default="model")
    use.add_argument("--since", type=_day_start, metavar="YYYY-MM-DD", help="from this UTC day (default: the period)")
    use.add_argument("--until", type=_day_start, metavar="YYYY-MM-DD", help="to the start of this UTC day, exclusive")
    _client_arguments(use)
    keys = sub.add_parser("keys", help="manage API keys").add_subparsers(dest="keys_command", required=True)
    new = keys.add_parser("new", help="print a new API key and its config entry")
    new.add_argument("--role", choices=("caller", "admin"), default="caller")
    new.add_argument("--name", default="new-key", help="a name for the key, shown in logs")
    migrate = sub.add_parser("migrate", help="create or upgrade the ledger's schema, then exit")
    migrate.add_argument(
        "--ledger",
        default=os.environ.get("SWITCHBOARD_LEDGER", Settings().ledger),
        help="sqlite:PATH or postgresql://... (default: $SWITCHBOARD_LEDGER or the serve default)",
    )
    args = parser.parse_args(argv)
    if args.command == "keys":
        return _keys(args)
    if args.command == "migrate":
        return _migrate(args.ledger)
    if args.command == "serve":
        from switchboard.server import run_loop, supervise  # noqa: PLC0415
        from switchboard.server import serve as run_server  # noqa: PLC0415 - keeps client commands light

        settings = settings_from_args(args)
        try:
            if settings.workers > 1:
                return supervise(settings, list(argv if argv is not None else sys.argv[1:])[1:])
            run_loop(run_server(settings), settings.event_loop)
        except ConfigError as exc:
            print(f"switchboard: cannot start: {exc}", file=sys.stderr)
            return 2
        return 0
    return asyncio.run(_client(args))


if __name__ == "__main__":
    sys.exit(main())
