"""API keys over a real channel: missing, unknown and wrong-role keys, open health and reflection,
open mode only on loopback, and `switchboard keys new`."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from conftest import ServerFactory, error_info
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from structlog.testing import capture_logs
from switchboard import auth
from switchboard.catalog import default_config_text
from switchboard.errors import ConfigError
from switchboard.server import create_server, is_loopback
from switchboard.settings import Settings
from switchboard.v1 import accounts_pb2, accounts_pb2_grpc, catalog_pb2, router_pb2, router_pb2_grpc

CALLER = auth.new_key()
ADMIN = auth.new_key()
REQ = router_pb2.GenerateRequest(account_id="acct-1", modality=catalog_pb2.MODALITY_TEXT, prompt="hi")


def config_with_keys(tmp_path: Path, *entries: tuple[str, str, str]) -> str:
    """The seed config plus ``api_keys`` entries (name, key, role); returns the file's path."""
    lines = ["", "api_keys:"] + [
        f"  - {{name: {name}, sha256: {auth.digest(key)}, role: API_KEY_ROLE_{role.upper()}}}"
        for name, key, role in entries
    ]
    path = tmp_path / "keys.yaml"
    path.write_text(default_config_text() + "\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def bearer(key: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {key}"),)


@pytest.fixture
async def secured(start_server: ServerFactory, tmp_path: Path) -> grpc.aio.Channel:
    """A channel to a server configured with one caller key and one admin key."""
    path = config_with_keys(tmp_path, ("svc", CALLER, "caller"), ("ops", ADMIN, "admin"))
    handle, _ = await start_server(config_path=path)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{handle.port}")
    yield channel
    await channel.close()


class TestUnauthenticated:
    """Calls without a valid key are UNAUTHENTICATED with one ErrorInfo."""

    @pytest.mark.parametrize(
        ("metadata", "reason"),
        [
            ((), "MISSING_CREDENTIALS"),
            ((("authorization", "Bearer sb_not-a-key"),), "INVALID_API_KEY"),
            ((("authorization", "Basic dXNlcjpwYXNz"),), "INVALID_API_KEY"),
            ((("authorization", "Bearer " + auth.digest(CALLER)),), "INVALID_API_KEY"),
        ],
    )
    async def test_unary_refused(self, secured: grpc.aio.Channel, metadata: tuple, reason: str) -> None:
        """ListModels with no, an unknown, a non-bearer or a hash-as-key credential is refused."""
        stub = router_pb2_grpc.RouterServiceStub(secured)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.ListModels(router_pb2.ListModelsRequest(), metadata=metadata, timeout=5)
        assert err.value.code() is grpc.StatusCode.UNAUTHENTICATED
        assert error_info(err.value).reason == reason

    async def test_hostile_headers(self, secured: grpc.aio.Channel) -> None:
        """Odd authorization values (huge, empty, doubled, binary-looking) are UNAUTHENTICATED, never INTERNAL."""
        stub = router_pb2_grpc.RouterServiceStub(secured)
        values = [
            "Bearer",
            "Bearer ",
            "bearer  " + "x" * 7000,
            "Bearer sb_%00~!",
            "Token " + CALLER,
            "Bearer " + CALLER[:-1],
        ]
        for value in values:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.ListModels(router_pb2.ListModelsRequest(), metadata=(("authorization", value),), timeout=5)
            assert err.value.code() is grpc.StatusCode.UNAUTHENTICATED, value[:40]
        doubled = (("authorization", "Bearer sb_wrong"), ("authorization", f"Bearer {CALLER}"))
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.ListModels(router_pb2.ListModelsRequest(), metadata=doubled, timeout=5)
        assert error_info(err.value).reason == "INVALID_API_KEY"  # the first header counts

    async def test_stream_refused(self, secured: grpc.aio.Channel) -> None:
        """Generate without a key fails before any frame."""
        stub = router_pb2_grpc.RouterServiceStub(secured)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            async for _ in stub.Generate(REQ, timeout=5):
                pytest.fail("no frame may be sent")
        assert err.value.code() is grpc.StatusCode.UNAUTHENTICATED
        assert error_info(err.value).reason == "MISSING_CREDENTIALS"

    async def test_garbage_body_is_not_parsed(self, secured: grpc.aio.Channel) -> None:
        """An unauthenticated call with unparseable bytes is refused as UNAUTHENTICATED, not parsed."""
        call = secured.unary_unary("/switchboard.v1.RouterService/SelectModel")
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call(b"\xff\xff\xff", timeout=5)
        assert err.value.code() is grpc.StatusCode.UNAUTHENTICATED


class TestRoles:
    """caller may use RouterService only; admin may use everything."""

    async def test_caller_uses_router(self, secured: grpc.aio.Channel) -> None:
        """A caller key lists models, selects and streams; the rpc log event names the key, never the key itself."""
        stub = router_pb2_grpc.RouterServiceStub(secured)
        with capture_logs() as logs:
            listed = await stub.ListModels(router_pb2.ListModelsRequest(), metadata=bearer(CALLER), timeout=5)
        rpc = next(e for e in logs if e["event"] == "rpc")
        assert rpc["api_key"] == "svc"
        assert CALLER not in repr(logs)
        assert len(listed.models) == 28
        await stub.SelectModel(router_pb2.SelectModelRequest(request=REQ), metadata=bearer(CALLER), timeout=5)
        kinds = [f.WhichOneof("event") async for f in stub.Generate(REQ, metadata=bearer(CALLER), timeout=10)]
        assert kinds[0] == "decision"
        assert kinds[-1] == "completion"

    async def test_caller_denied_accounts(self, secured: grpc.aio.Channel) -> None:
        """A caller key calling AccountService is PERMISSION_DENIED, naming the key and role."""
        stub = accounts_pb2_grpc.AccountServiceStub(secured)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.GetAccount(accounts_pb2.GetAccountRequest(account_id="a"), metadata=bearer(CALLER), timeout=5)
        assert err.value.code() is grpc.StatusCode.PERMISSION_DENIED
        info = error_info(err.value)
        assert info.reason == "PERMISSION_DENIED"
        assert info.metadata["key_name"] == "svc"
        assert info.metadata["role"] == "caller"
        assert CALLER not in err.value.details()

    async def test_admin_uses_both(self, secured: grpc.aio.Channel) -> None:
        """An admin key creates an account and calls RouterService."""
        accounts = accounts_pb2_grpc.AccountServiceStub(secured)
        created = await accounts.CreateAccount(
            accounts_pb2.CreateAccountRequest(account_id="acct-9"), metadata=bearer(ADMIN), timeout=5
        )
        assert created.account.account_id == "acct-9"
        router = router_pb2_grpc.RouterServiceStub(secured)
        await router.ListModels(router_pb2.ListModelsRequest(), metadata=bearer(ADMIN), timeout=5)

    def test_unknown_service_is_admin_only(self) -> None:
        """A Switchboard service with no rule is admin-only; health is not protected."""
        assert auth.roles_for("/switchboard.v2.NewService/Do") == frozenset({auth.Role.ADMIN})
        assert not auth.is_protected("/grpc.health.v1.Health/Check")


class TestOpenServices:
    """Health and reflection need no key."""

    async def test_health_and_reflection(self, secured: grpc.aio.Channel) -> None:
        """Health says SERVING and reflection lists the services, both without a key."""
        health = health_pb2_grpc.HealthStub(secured)
        resp = await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
        assert resp.status == health_pb2.HealthCheckResponse.SERVING
        refl = reflection_pb2_grpc.ServerReflectionStub(secured)
        names: list[str] = []
        async for r in refl.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")])):
            names += [s.name for s in r.list_services_response.service]
        assert "switchboard.v1.RouterService" in names


class TestOpenMode:
    """Without keys the server is open, and only on loopback unless allowed."""

    async def test_refuses_non_loopback(self, tmp_path: Path) -> None:
        """No keys on 0.0.0.0 is refused at start-up; --allow-unauthenticated permits it."""
        settings = Settings(listen="0.0.0.0:0", ledger=f"sqlite:{tmp_path / 'l.db'}")
        with pytest.raises(ConfigError, match="allow-unauthenticated"):
            await create_server(settings)
        handle = await create_server(
            Settings(listen="0.0.0.0:0", ledger=f"sqlite:{tmp_path / 'l2.db'}", allow_unauthenticated=True)
        )
        await handle.stop(0)

    async def test_reload_cannot_open_a_public_server(self, tmp_path: Path) -> None:
        """On 0.0.0.0, a reload to a config without keys is refused and the keys stay in force."""
        path = config_with_keys(tmp_path, ("svc", CALLER, "caller"))
        handle = await create_server(
            Settings(listen="0.0.0.0:0", config_path=path, ledger=f"sqlite:{tmp_path / 'l.db'}")
        )
        try:
            Path(path).write_text(default_config_text(), encoding="utf-8")  # noqa: ASYNC240 - a small file in a test
            with capture_logs() as logs:
                assert handle.reload() is False
            assert "allow-unauthenticated" in next(e for e in logs if e["event"] == "reload_refused")["reason"]
            assert handle.app.keys.enabled
        finally:
            await handle.stop(0)

    def test_loopback_addresses(self) -> None:
        """127.0.0.0/8, ::1 and localhost are loopback; 0.0.0.0, :: and names are not."""
        assert all(is_loopback(a) for a in ("127.0.0.1:1", "127.9.9.9:0", "[::1]:50051", "localhost:1"))
        assert not any(is_loopback(a) for a in ("0.0.0.0:1", "[::]:1", "example.com:1", ":50051"))

    def test_bad_key_entries(self) -> None:
        """A key entry with a raw key instead of a digest, or no role, is a config error."""
        with pytest.raises(ConfigError, match="64 lowercase hex"):
            auth.key_ring([("svc", CALLER, 1)])
        with pytest.raises(ConfigError, match="role"):
            auth.key_ring([("svc", auth.digest(CALLER), 0)])


class TestKeysCommand:
    """`switchboard keys new` prints a working key and its config entry."""

    async def test_new_key_works(self, start_server: ServerFactory, tmp_path: Path) -> None:
        """The printed entry, pasted into the config, admits the printed key for RouterService only."""
        exe = Path(sys.executable).with_name("switchboard")
        out = await asyncio.to_thread(
            subprocess.run,
            [str(exe), "keys", "new", "--role", "caller", "--name", "web"],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        )
        key, entry = out.stdout.strip().splitlines()
        assert key.startswith("sb_")
        assert key not in entry
        path = tmp_path / "cfg.yaml"
        path.write_text(default_config_text() + "\napi_keys:\n  " + entry + "\n", encoding="utf-8")
        handle, stub = await start_server(config_path=str(path))
        listed = await stub.ListModels(router_pb2.ListModelsRequest(), metadata=bearer(key), timeout=5)
        assert listed.models
        target = f"127.0.0.1:{handle.port}"
        # The server shares this event loop, so the client process is waited for off the loop.
        cli = await asyncio.to_thread(
            subprocess.run,
            [str(exe), "models", "--target", target, "--api-key", key],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert cli.returncode == 0, cli.stderr
        denied = await asyncio.to_thread(
            subprocess.run,
            [str(exe), "models", "--target", target],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert denied.returncode == 1
        assert "reason: MISSING_CREDENTIALS" in denied.stderr
