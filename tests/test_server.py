"""The server's transport over real channels: TLS and mutual TLS, size limits, concurrent streams
per connection, keepalive policy and graceful shutdown."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from certs import Authority
from conftest import ServerFactory, error_info, wait_until
from grpc_health.v1 import health_pb2, health_pb2_grpc
from switchboard.convert import Limits
from switchboard.providers.simulated import SimulationProfile
from switchboard.v1 import catalog_pb2, router_pb2, router_pb2_grpc

TEXT = catalog_pb2.MODALITY_TEXT


def gen(prompt: str = "hello", **kw: object) -> router_pb2.GenerateRequest:
    return router_pb2.GenerateRequest(account_id="acct-1", modality=TEXT, prompt=prompt, **kw)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A CA with a server and a client certificate, and a second CA with its own client certificate."""
    d = tmp_path_factory.mktemp("pki")
    ca, rogue = Authority(d, "ca"), Authority(d, "rogue")
    return {
        "ca": ca,
        "server": ca.issue("localhost", server=True),
        "client": ca.issue("client", server=False),
        "rogue_client": rogue.issue("client", server=False),
    }


async def list_models(channel: grpc.aio.Channel) -> int:
    stub = router_pb2_grpc.RouterServiceStub(channel)
    return len((await stub.ListModels(router_pb2.ListModelsRequest(), timeout=5)).models)


async def rest_of(call: grpc.aio.UnaryStreamCall) -> list[str]:
    """The event kinds of the frames left on a stream already read from with ``read()``."""
    kinds = []
    while (frame := await call.read()) is not grpc.aio.EOF:
        kinds.append(frame.WhichOneof("event"))
    return kinds


class TestTls:
    """--tls-cert/--tls-key serve TLS; --tls-client-ca requires a client certificate from that CA."""

    async def test_tls_and_plaintext(self, start_server: ServerFactory, pki: dict) -> None:
        """A TLS client that trusts the CA is served; a plaintext client is not."""
        server = pki["server"]
        handle, _ = await start_server(tls_cert=server.cert_path, tls_key=server.key_path)
        target = f"127.0.0.1:{handle.port}"
        creds = grpc.ssl_channel_credentials(root_certificates=pki["ca"].pem)
        async with grpc.aio.secure_channel(target, creds) as channel:
            assert await list_models(channel) == 28
        async with grpc.aio.insecure_channel(target) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await list_models(channel)
            assert err.value.code() is grpc.StatusCode.UNAVAILABLE

    async def test_mutual_tls(self, start_server: ServerFactory, pki: dict) -> None:
        """With a client CA: no client certificate or one from another CA is refused; the CA's is
        served, also to the CLI with --tls-ca/--tls-cert/--tls-key."""
        server, client, rogue = pki["server"], pki["client"], pki["rogue_client"]
        handle, _ = await start_server(tls_cert=server.cert_path, tls_key=server.key_path, tls_client_ca=pki["ca"].path)
        target = f"127.0.0.1:{handle.port}"
        ca = pki["ca"].pem
        for creds in (
            grpc.ssl_channel_credentials(root_certificates=ca),
            grpc.ssl_channel_credentials(root_certificates=ca, private_key=rogue.key, certificate_chain=rogue.cert),
        ):
            async with grpc.aio.secure_channel(target, creds) as channel:
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await list_models(channel)
                assert err.value.code() is grpc.StatusCode.UNAVAILABLE
        good = grpc.ssl_channel_credentials(root_certificates=ca, private_key=client.key, certificate_chain=client.cert)
        async with grpc.aio.secure_channel(target, good) as channel:
            assert await list_models(channel) == 28
        exe = str(Path(sys.executable).with_name("switchboard"))
        tls = ["--tls-ca", pki["ca"].path, "--tls-cert", client.cert_path, "--tls-key", client.key_path]
        cli = await asyncio.to_thread(
            subprocess.run,
            [exe, "models", "--target", f"localhost:{handle.port}", *tls],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert cli.returncode == 0, cli.stderr
        assert len(cli.stdout.splitlines()) == 28

    async def test_missing_key_file(self, start_server: ServerFactory, pki: dict, tmp_path: Path) -> None:
        """A certificate without its key, or an unreadable file, stops start-up with a clear error."""
        from switchboard.errors import ConfigError  # noqa: PLC0415

        with pytest.raises(ConfigError, match="both"):
            await start_server(tls_cert=pki["server"].cert_path)
        with pytest.raises(ConfigError, match="cannot read"):
            await start_server(tls_cert=str(tmp_path / "nope.pem"), tls_key=str(tmp_path / "nope.key"))


class TestSizeLimits:
    """Oversize input is refused with a status; the server keeps serving."""

    async def test_message_too_large(self, start_server: ServerFactory) -> None:
        """A request over the message limit is RESOURCE_EXHAUSTED, and the next call works."""
        _, stub = await start_server(max_message_bytes=256 * 1024)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.SelectModel(router_pb2.SelectModelRequest(request=gen("x" * 300_000)), timeout=5)
        assert err.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        ok = await stub.SelectModel(router_pb2.SelectModelRequest(request=gen()), timeout=5)
        assert ok.decision.model.id

    async def test_prompt_too_large(self, start_server: ServerFactory) -> None:
        """A prompt or conversation over the character limit is PROMPT_TOO_LARGE."""
        _, stub = await start_server(limits=Limits(max_prompt_chars=1000))
        with pytest.raises(grpc.aio.AioRpcError) as err:
            async for _ in stub.Generate(gen("y" * 1001), timeout=5):
                pass
        assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert error_info(err.value).reason == "PROMPT_TOO_LARGE"
        convo = router_pb2.Conversation(
            messages=[router_pb2.ChatMessage(role=router_pb2.ROLE_USER, content="z" * 600) for _ in range(2)]
        )
        req = router_pb2.GenerateRequest(account_id="a", modality=TEXT, conversation=convo)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.SelectModel(router_pb2.SelectModelRequest(request=req), timeout=5)
        assert error_info(err.value).reason == "PROMPT_TOO_LARGE"

    async def test_attachment_too_large(self, start_server: ServerFactory) -> None:
        """An attachment over the byte limit, top-level or in a message, is ATTACHMENT_TOO_LARGE."""
        _, stub = await start_server(limits=Limits(max_attachment_bytes=1024))
        big = router_pb2.Attachment(mime_type="image/png", data=b"\x89PNG" + b"\0" * 2000)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            async for _ in stub.Generate(gen(attachments=[big]), timeout=5):
                pass
        assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        info = error_info(err.value)
        assert info.reason == "ATTACHMENT_TOO_LARGE"
        assert info.metadata["field"] == "attachments[0].data"
        convo = router_pb2.Conversation(
            messages=[router_pb2.ChatMessage(role=router_pb2.ROLE_USER, content="see", attachments=[big])]
        )
        req = router_pb2.GenerateRequest(account_id="a", modality=TEXT, conversation=convo)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.SelectModel(router_pb2.SelectModelRequest(request=req), timeout=5)
        assert error_info(err.value).metadata["field"] == "request.conversation.messages[0].attachments[0].data"
        small = router_pb2.Attachment(mime_type="image/png", data=b"\x89PNG" + b"\0" * 100)
        await stub.SelectModel(router_pb2.SelectModelRequest(request=gen(attachments=[small])), timeout=5)


class TestConnectionLimits:
    """Streams per connection and keepalive are enforced by the transport."""

    async def test_max_concurrent_streams(self, start_server: ServerFactory) -> None:
        """With a limit of 2, four streams on one connection run at most two at a time; each completes
        or is refused by the transport."""
        slow = SimulationProfile(time_to_first_token_s=0.0, inter_token_s=0.02, tokens=15)
        handle, stub = await start_server(max_concurrent_streams=2, simulation=slow)
        sim = handle.app.simulator
        peak = 0

        async def watch() -> None:
            nonlocal peak
            while True:
                peak = max(peak, sim.active_streams)
                await asyncio.sleep(0.002)

        async def run(i: int) -> str:
            try:
                kinds = [f.WhichOneof("event") async for f in stub.Generate(gen(f"stream {i}"), timeout=30)]
            except grpc.aio.AioRpcError as exc:
                # The server may refuse a stream the client opened before it saw the previous one
                # close there (HTTP/2 REFUSED_STREAM); that is the transport's answer, not a crash.
                refused = exc.code() is grpc.StatusCode.UNAVAILABLE and "RST_STREAM" in (exc.details() or "")
                return "refused" if refused else f"{exc.code().name}: {exc.details()}"
            return kinds[-1]

        # One call first, so the client has the server's SETTINGS (the limit) before the burst;
        # streams opened before that may be refused with REFUSED_STREAM.
        await stub.ListModels(router_pb2.ListModelsRequest(), timeout=5)
        watcher = asyncio.create_task(watch())
        results = await asyncio.gather(*(run(i) for i in range(4)))
        watcher.cancel()
        assert set(results) <= {"completion", "refused"}
        assert results.count("completion") >= 2
        assert 1 <= peak <= 2  # four at once without the limit

    async def test_keepalive_ping_policy(self, start_server: ServerFactory) -> None:
        """An idle client pinging more often than the server's minimum interval gets GOAWAY
        (too_many_pings) and its connection drops; with a shorter minimum it stays connected."""
        options = [
            ("grpc.keepalive_time_ms", 100),  # gRPC clamps this to one ping a second
            ("grpc.keepalive_timeout_ms", 5000),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.max_pings_without_data", 0),
        ]
        strict, _ = await start_server(min_ping_interval_s=10.0)
        lenient, _ = await start_server(min_ping_interval_s=0.2)
        channels = [grpc.aio.insecure_channel(f"127.0.0.1:{h.port}", options=options) for h in (strict, lenient)]
        try:
            for channel in channels:
                assert await list_models(channel) == 28
            await wait_until(lambda: channels[0].get_state() is grpc.ChannelConnectivity.IDLE, within=15)
            await asyncio.sleep(1.0)
            assert channels[1].get_state() is grpc.ChannelConnectivity.READY
        finally:
            for channel in channels:
                await channel.close()


class TestGracefulShutdown:
    """stop(grace): NOT_SERVING first, no new calls, streams get the grace period, then on_shutdown."""

    async def test_grace_period(self, start_server: ServerFactory) -> None:
        """A short stream finishes, a new call is refused, a long stream is cancelled at the end of
        the grace period with its provider call closed, and on_shutdown runs after that."""
        slow = SimulationProfile(time_to_first_token_s=0.0, inter_token_s=0.05, tokens=400)
        handle, stub = await start_server(simulation=slow)
        sim = handle.app.simulator
        seen: list[tuple[int, int]] = []

        async def release() -> None:
            # Runs after every stream ended and settled, while the ledger is still open.
            record = await handle.app.ledger.get("acct-1")
            assert record is not None
            seen.append((sim.active_streams, record.held))

        handle.app.on_shutdown.append(release)
        short = stub.Generate(gen("short", options=router_pb2.GenerationOptions(max_output_tokens=10)), timeout=30)
        long = stub.Generate(gen("long"), timeout=30)
        assert (await short.read()).WhichOneof("event") == "decision"
        assert (await long.read()).WhichOneof("event") == "decision"
        health = health_pb2_grpc.HealthStub(grpc.aio.insecure_channel(f"127.0.0.1:{handle.port}"))
        loop = asyncio.get_running_loop()
        started = loop.time()
        stopping = asyncio.create_task(handle.stop(1.0))
        await asyncio.sleep(0.2)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.ListModels(router_pb2.ListModelsRequest(), timeout=5)
        assert err.value.code() is grpc.StatusCode.UNAVAILABLE
        short_kinds = await rest_of(short)
        assert short_kinds[-1] == "completion"
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await rest_of(long)
        assert err.value.code() in (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE)
        await asyncio.wait_for(stopping, 15)
        assert 0.9 <= loop.time() - started < 10
        await wait_until(lambda: sim.active_streams == 0)
        assert seen == [(0, 0)]  # provider calls closed, credit holds settled
        del health

    async def test_stream_of_a_replaced_config_settles_before_the_ledger_closes(
        self, start_server: ServerFactory
    ) -> None:
        """A stream that started before a reload and is cancelled at shutdown settles its hold
        before on_shutdown runs and the ledger closes."""
        slow = SimulationProfile(time_to_first_token_s=0.0, inter_token_s=0.05, tokens=400)
        handle, stub = await start_server(simulation=slow)
        old_sim = handle.app.simulator
        seen: list[int] = []

        async def check_held() -> None:
            record = await handle.app.ledger.get("acct-1")
            assert record is not None
            seen.append(record.held)

        handle.app.on_shutdown.append(check_held)
        long = stub.Generate(gen("long"), timeout=30)
        assert (await long.read()).WhichOneof("event") == "decision"
        assert handle.reload() is True
        assert handle.app.simulator is not old_sim
        await asyncio.wait_for(handle.stop(0.2), 15)
        with pytest.raises(grpc.aio.AioRpcError):
            await rest_of(long)
        assert old_sim.active_streams == 0
        assert seen == [0]  # the replaced app's stream was settled, and shutdown waited for it

    async def test_health_not_serving_first(self, start_server: ServerFactory) -> None:
        """While a stream runs in the grace period, health reports NOT_SERVING to a watcher."""
        slow = SimulationProfile(time_to_first_token_s=0.0, inter_token_s=0.05, tokens=20)
        handle, stub = await start_server(simulation=slow)
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{handle.port}")
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""), timeout=20)
        assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING
        stream = stub.Generate(gen("x"), timeout=30)
        await stream.read()
        stopping = asyncio.create_task(handle.stop(5.0))
        assert (await watch.read()).status == health_pb2.HealthCheckResponse.NOT_SERVING
        watch.cancel()  # a watch is a stream too; left open it would hold shutdown for the whole grace
        kinds = await rest_of(stream)
        assert kinds[-1] == "completion"
        await asyncio.wait_for(stopping, 15)
        await channel.close()
