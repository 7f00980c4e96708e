"""The deploy files (deploy/) checked against the server they package: every flag, port and probe
in the container image, the Helm chart's rendered manifests and the HAProxy config must be what
`switchboard serve --help` and the running server agree with. The rendered manifests are
deploy/helm/rendered.yaml, produced by `make helm-render` (helm template) and kept current by
`make helm-check`, which also runs `helm lint`."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from procs import BIN, ServerProcess
from switchboard.catalog import load_catalog

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
HEALTHCHECK = DEPLOY / "docker" / "healthcheck.py"


@pytest.fixture(scope="module")
def serve_flags() -> set[str]:
    """Every flag `switchboard serve --help` lists."""
    out = subprocess.run([str(BIN), "serve", "--help"], capture_output=True, text=True, check=True, timeout=60)
    flags = set(re.findall(r"(--[a-z][a-z0-9-]*)", out.stdout))
    assert {"--listen", "--grace", "--ledger", "--limiter", "--workers"} <= flags
    return flags


def env_flag(name: str) -> str:
    """The flag a SWITCHBOARD_<FLAG> variable sets (SWITCHBOARD_METRICS_LISTEN -> --metrics-listen)."""
    return "--" + name.removeprefix("SWITCHBOARD_").lower().replace("_", "-")


def port_of(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


@pytest.fixture(scope="module")
def dockerfile() -> dict[str, list[str]]:
    """deploy/Dockerfile's instructions, each keyword with its arguments in order."""
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            word, _, rest = line.strip().partition(" ")
            out.setdefault(word.upper(), []).append(rest.strip())
    return out


@pytest.fixture(scope="module")
def docs() -> dict[str, dict[str, Any]]:
    """The chart's rendered manifests by kind/name."""
    rendered = list(yaml.safe_load_all((DEPLOY / "helm" / "rendered.yaml").read_text()))
    return {f"{d['kind']}/{d['metadata']['name']}": d for d in rendered if d}


class TestImage:
    """deploy/Dockerfile: slim, non-root, the embedded config, a gRPC health probe, real flags."""

    def env(self, dockerfile: dict[str, list[str]]) -> dict[str, str]:
        pairs = [p for line in dockerfile["ENV"] for p in shlex.split(line)]
        return dict(p.split("=", 1) for p in pairs)

    def test_the_final_stage_is_slim_and_runs_as_a_numeric_non_root_user(
        self, dockerfile: dict[str, list[str]]
    ) -> None:
        assert all("slim" in base for base in dockerfile["FROM"])
        user = dockerfile["USER"][-1].split(":")[0]
        assert user.isdigit()
        assert int(user) != 0

    def test_it_serves_the_embedded_config_with_real_flags_on_the_ports_it_exposes(
        self, dockerfile: dict[str, list[str]], serve_flags: set[str]
    ) -> None:
        env = self.env(dockerfile)
        assert "SWITCHBOARD_CONFIG" not in env  # the packaged default unless a deployment mounts one
        switchboard_vars = [k for k in env if k.startswith("SWITCHBOARD_")]
        assert switchboard_vars
        for var in switchboard_vars:
            assert env_flag(var) in serve_flags, var
        exposed = {int(p) for line in dockerfile["EXPOSE"] for p in line.split()}
        assert exposed == {port_of(env["SWITCHBOARD_LISTEN"]), port_of(env["SWITCHBOARD_METRICS_LISTEN"])}
        assert dockerfile["ENTRYPOINT"] == ['["switchboard", "serve"]']
        assert dockerfile["STOPSIGNAL"] == ["SIGTERM"]

    def test_the_health_probe_checks_the_grpc_port(self, dockerfile: dict[str, list[str]]) -> None:
        env = self.env(dockerfile)
        (check,) = dockerfile["HEALTHCHECK"]
        assert "switchboard-healthcheck" in check
        assert f'"127.0.0.1:{port_of(env["SWITCHBOARD_LISTEN"])}"' in check
        assert any(
            "deploy/docker/healthcheck.py /opt/switchboard/bin/switchboard-healthcheck" in c for c in dockerfile["COPY"]
        )

    def test_the_build_stage_context_makes_a_package_with_the_command_and_the_embedded_config(
        self, dockerfile: dict[str, list[str]], tmp_path: Path
    ) -> None:
        """What the build stage copies (its COPY lines) is enough to build the wheel it installs."""
        context = tmp_path / "src"
        context.mkdir()
        for line in dockerfile["COPY"]:
            *sources, dest = line.split()
            if sources[0].startswith("--from"):
                continue
            for source in sources:
                target = context / dest / (Path(source).name if dest.endswith("/") else "")
                if (ROOT / source).is_dir():
                    shutil.copytree(ROOT / source, target, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
                else:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy(ROOT / source, target)
        wheels = tmp_path / "wheels"
        pip = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", str(context), "-w", str(wheels)]
        out = subprocess.run(pip, check=False, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        (wheel,) = wheels.glob("switchboard-*.whl")
        with zipfile.ZipFile(wheel) as z:
            names = z.namelist()
            entry_points = next(z.read(n).decode() for n in names if n.endswith("entry_points.txt"))
        assert "switchboard/config/default.yaml" in names
        assert re.search(r"^switchboard = switchboard\.cli:", entry_points, re.M)
        assert len(load_catalog(None).models) == 28


def test_health_probe_exits_0_on_a_serving_server_and_1_when_nothing_answers(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, "probe", "--workers", "1", "--ledger", f"sqlite:{tmp_path / 'l.db'}")
    try:
        ok = subprocess.run(
            [sys.executable, str(HEALTHCHECK), server.target], check=False, capture_output=True, text=True, timeout=30
        )
        assert ok.returncode == 0, ok.stderr
        assert "SERVING" in ok.stdout
    finally:
        server.stop()
    down = subprocess.run(
        [sys.executable, str(HEALTHCHECK), server.target], check=False, capture_output=True, text=True, timeout=30
    )
    assert down.returncode == 1
    assert "UNAVAILABLE" in down.stderr


class TestChart:
    """The Helm chart's rendered manifests (deploy/helm/rendered.yaml)."""

    def deployment(self, docs: dict[str, dict[str, Any]]) -> dict[str, Any]:
        (dep,) = [d for d in docs.values() if d["kind"] == "Deployment"]
        return dep

    def container(self, docs: dict[str, dict[str, Any]]) -> dict[str, Any]:
        (c,) = self.deployment(docs)["spec"]["template"]["spec"]["containers"]
        return c

    def args(self, docs: dict[str, dict[str, Any]]) -> dict[str, str]:
        return dict([*a.split("=", 1), ""][:2] for a in self.container(docs)["args"])

    def test_every_argument_and_variable_is_a_serve_flag(
        self, docs: dict[str, dict[str, Any]], serve_flags: set[str]
    ) -> None:
        for flag in self.args(docs):
            assert flag in serve_flags, flag
        for var in self.container(docs)["env"]:
            assert env_flag(var["name"]) in serve_flags, var["name"]

    def test_ports_and_grpc_probes_match_the_listen_flags(self, docs: dict[str, dict[str, Any]]) -> None:
        c, args = self.container(docs), self.args(docs)
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        assert ports == {"grpc": port_of(args["--listen"]), "metrics": port_of(args["--metrics-listen"])}
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            assert c[probe]["grpc"] == {"port": ports["grpc"]}, probe

    def test_termination_grace_covers_the_pre_stop_wait_and_the_drain(self, docs: dict[str, dict[str, Any]]) -> None:
        spec = self.deployment(docs)["spec"]["template"]["spec"]
        grace = float(self.args(docs)["--grace"])
        pre_stop = float(self.container(docs)["lifecycle"]["preStop"]["exec"]["command"][-1])
        assert spec["terminationGracePeriodSeconds"] > pre_stop + grace

    def test_runs_as_non_root_with_a_read_only_root(self, docs: dict[str, dict[str, Any]]) -> None:
        spec = self.deployment(docs)["spec"]["template"]["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] != 0
        sc = self.container(docs)["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["allowPrivilegeEscalation"] is False

    def test_the_catalog_comes_from_a_config_map_the_server_accepts(
        self, docs: dict[str, dict[str, Any]], tmp_path: Path
    ) -> None:
        (cm,) = [d for d in docs.values() if d["kind"] == "ConfigMap"]
        config = tmp_path / "config.yaml"
        config.write_text(cm["data"]["config.yaml"])
        assert len(load_catalog(config).models) == 28
        mounts = {v["name"]: v for v in self.deployment(docs)["spec"]["template"]["spec"]["volumes"]}
        assert mounts["config"]["configMap"]["name"] == cm["metadata"]["name"]
        (mount,) = [m for m in self.container(docs)["volumeMounts"] if m["name"] == "config"]
        assert self.args(docs)["--config"] == mount["mountPath"] + "/config.yaml"

    def test_provider_keys_come_from_a_secret_and_the_ledger_dsn_too(self, docs: dict[str, dict[str, Any]]) -> None:
        volumes = {v["name"]: v for v in self.deployment(docs)["spec"]["template"]["spec"]["volumes"]}
        assert volumes["provider-keys"]["secret"]["items"] == [{"key": "keys.yaml", "path": "keys.yaml"}]
        (mount,) = [m for m in self.container(docs)["volumeMounts"] if m["name"] == "provider-keys"]
        assert self.args(docs)["--provider-keys-file"] == mount["mountPath"] + "/keys.yaml"
        (ledger,) = [e for e in self.container(docs)["env"] if e["name"] == "SWITCHBOARD_LEDGER"]
        assert "secretKeyRef" in ledger["valueFrom"]
        assert not any(k.endswith("_API_KEY") or k == "FAL_KEY" for k in map(str, self.container(docs)["env"]))

    def test_a_disruption_budget_and_services_select_the_pods(self, docs: dict[str, dict[str, Any]]) -> None:
        labels = self.deployment(docs)["spec"]["template"]["metadata"]["labels"]
        (pdb,) = [d for d in docs.values() if d["kind"] == "PodDisruptionBudget"]
        assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
        assert pdb["spec"]["maxUnavailable"] >= 1
        services = [d for d in docs.values() if d["kind"] == "Service" and d["spec"].get("type") != "ExternalName"]
        assert {s["spec"].get("clusterIP") for s in services} == {None, "None"}  # one ClusterIP, one headless
        for s in services:
            assert s["spec"]["selector"].items() <= labels.items()
            assert any(p["targetPort"] == "grpc" and p["appProtocol"] == "grpc" for p in s["spec"]["ports"])

    def test_postgresql_and_redis_are_external_services_the_flags_point_at(
        self, docs: dict[str, dict[str, Any]]
    ) -> None:
        external = {d["metadata"]["name"] for d in docs.values() if d.get("spec", {}).get("type") == "ExternalName"}
        assert external == {"switchboard-postgresql", "switchboard-redis"}
        assert self.args(docs)["--limiter"].startswith("redis://switchboard-redis:")


class TestBalancer:
    """deploy/haproxy/haproxy.cfg: HTTP/2 on both sides, balanced per call (make cluster runs it)."""

    CFG = DEPLOY / "haproxy" / "haproxy.cfg"

    def test_it_balances_http2_per_call(self) -> None:
        lines = [ln.split("#")[0].strip() for ln in self.CFG.read_text().splitlines()]
        assert "mode http" in lines  # L7: each call (HTTP/2 stream) is balanced, not each connection
        assert any(ln.startswith("bind ") and ln.endswith("proto h2") for ln in lines)
        assert any(ln.startswith("default-server proto h2 check") for ln in lines)

    def test_haproxy_accepts_the_config(self, tmp_path: Path) -> None:
        haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
        if not os.path.exists(haproxy):
            pytest.fail("haproxy is not installed; run `make haproxy`")
        env = {**os.environ, "LISTEN": "127.0.0.1:1", "STATS_SOCKET": str(tmp_path / "s.sock")}
        env |= {f"SB_{i}": f"127.0.0.1:{i + 1}" for i in (1, 2, 3)}
        out = subprocess.run(
            [haproxy, "-c", "-f", str(self.CFG)], env=env, check=False, capture_output=True, text=True, timeout=30
        )
        assert out.returncode == 0, out.stdout + out.stderr
