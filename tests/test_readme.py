"""README.md runs as written: every marked snippet of the tour, load-testing and clients sections
is run against a live server started by `make run`, as a person following the README would.

A snippet is the fenced block after a ``<!-- snippet: NAME -->`` line. The server listens on a free
port instead of 50051, so ``127.0.0.1:50051`` in a snippet is replaced by its address and
``SWITCHBOARD_TARGET`` is set for the commands that take their target from it; nothing else is
changed. Commands run from a scratch folder that links to the checkout's files, so what they write
(``fox.png``, the ledger in ``var/``) stays out of the checkout. Shell snippets run one command
at a time (``export`` lines carry over); a command whose comment says ``error`` must fail with a
reason, every other one must succeed.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from media import png_pixels
from servers import free_port

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCUMENTED = "127.0.0.1:50051"
# Sections whose every fenced block must be a marked snippet.
RUN_SECTIONS = ("Two commands", "A five-minute tour", "Load testing a deployment", "Clients", "Usage reports")
# The Java example compiles with Maven and the TypeScript one with tsc: minutes on a loaded machine.
pytestmark = pytest.mark.timeout(900)
_MARKED = re.compile(r"<!-- snippet: (?P<name>[^>]+?) -->\n```(?P<lang>\w*)\n(?P<code>.*?)\n```", re.DOTALL)


@dataclass(frozen=True)
class Snippet:
    """One marked fenced block of the README."""

    name: str
    lang: str
    code: str


def snippets() -> dict[str, Snippet]:
    text = README.read_text(encoding="utf-8")
    return {m["name"]: Snippet(m["name"], m["lang"], m["code"]) for m in _MARKED.finditer(text)}


def commands(code: str) -> list[str]:
    """The shell commands of a block: continuation lines joined, blank lines skipped."""
    return [c.strip() for c in code.replace("\\\n", " ").splitlines() if c.strip()]


class Live:
    """`make run` serving from a scratch folder that links to the checkout, on a free port."""

    def __init__(self, work: Path) -> None:
        self.work = work
        # `make run` in the scratch folder must find the install done (else pip would install the
        # scratch folder itself into the checkout's .venv).
        subprocess.run(["make", "-s", ".venv/.installed-run"], cwd=ROOT, check=True, timeout=600)
        for entry in ROOT.iterdir():
            if entry.name not in ("var", "build", ".git"):
                (work / entry.name).symlink_to(entry)
        self.port = free_port()
        self.target = f"127.0.0.1:{self.port}"
        self.env = {**os.environ, "SWITCHBOARD_TARGET": self.target}
        self.env["PATH"] = os.pathsep.join(
            p for p in self.env.get("PATH", "").split(os.pathsep) if not (Path(p) / "grpcurl").exists()
        )
        run = next(c for c in commands(snippets()["two-commands"].code) if c.startswith("make run"))
        run = run.split("#")[0].strip() + f' ARGS="--listen {self.target} --sim-ttft-ms 20 --sim-inter-token-ms 2"'
        self.log = (work / "server.log").open("w")
        self.proc = subprocess.Popen(
            run, shell=True, cwd=work, env=self.env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self._wait_serving()

    def _wait_serving(self) -> None:
        deadline = time.monotonic() + 120
        with grpc.insecure_channel(self.target) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while True:
                try:
                    if stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status == 1:
                        return
                except grpc.RpcError:
                    pass
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("make run did not serve: " + (self.work / "server.log").read_text())
                time.sleep(0.2)

    def stop(self) -> str:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.log.close()
        return (self.work / "server.log").read_text()

    def shell(self, snippet: Snippet, timeout: float = 300) -> list[subprocess.CompletedProcess[str]]:
        """Run each command of a shell snippet in turn; ``export`` lines carry over."""
        exports: list[str] = []
        results = []
        for command in commands(snippet.code.replace(DOCUMENTED, self.target)):
            if command.startswith("export "):
                exports.append(command)
            script = "\n".join(["set -e", *exports, command])
            done = subprocess.run(
                ["bash", "-c", script],
                cwd=self.work,
                env=self.env,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
            expect_error = "error" in command.partition(" #")[2]
            ok = (done.returncode != 0 and "reason:" in done.stderr) if expect_error else done.returncode == 0
            assert ok, f"{command}\nexit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
            if command.startswith("make grpcurl"):
                exports.append('export PATH="$PWD/.tools/bin:$PATH"')
            results.append(done)
        return results


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    server = Live(tmp_path_factory.mktemp("readme"))
    yield server
    log = server.stop()
    assert "Traceback" not in log, log


def test_every_block_of_the_runnable_sections_is_a_snippet() -> None:
    """No fenced block in the tour, load-testing, clients or two-commands sections escapes the runner."""
    text = README.read_text(encoding="utf-8")
    for section in re.split(r"^## ", text, flags=re.MULTILINE)[1:]:
        title = section.splitlines()[0].strip()
        if title not in RUN_SECTIONS:
            continue
        fences = section.count("\n```") // 2
        marked = len(_MARKED.findall(section))
        assert fences == marked, f"{title}: {fences} fenced blocks, {marked} marked as snippets"
    assert {"two-commands", "tour", "grpcurl", "loadtest", "ghz", "python"} <= set(snippets())


def test_make_help_lists_every_target_the_readme_names() -> None:
    """Each `make X` in the README is a target `make help` lists with what it does."""
    out = subprocess.run(["make", "-s", "help"], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
    listed = {line.split()[1] for line in out.stdout.splitlines() if line.startswith("make ")}
    named = set(re.findall(r"`make ([a-z][\w-]*)", README.read_text(encoding="utf-8")))
    assert {"run", "test", "bench", "loadtest", "grpcurl", "clients", "protos", "lint"} <= listed
    assert named <= listed, named - listed


class TestTour:
    """The shell commands of the tour, grpcurl, load-testing and ghz snippets."""

    def test_tour(self, live: Live) -> None:
        """Every CLI command of the tour runs; the pinned one fails with its reason; the image is a PNG."""
        results = live.shell(snippets()["tour"])
        assert len(results[0].stdout.strip().splitlines()) == 28
        assert "standard to start (by task)" in results[3].stdout
        assert "MODEL_MISSING_CAPABILITIES" in results[6].stderr
        assert results[7].stdout.strip()
        width, height, _ = png_pixels((live.work / "fox.png").read_bytes())
        assert (width, height) == (512, 512)

    def test_grpcurl_from_the_documented_path(self, live: Live) -> None:
        """grpcurl is not on PATH before the snippet, and each of its calls works after `make grpcurl`."""
        assert shutil.which("grpcurl", path=live.env["PATH"]) is None
        results = live.shell(snippets()["grpcurl"])
        assert "switchboard.v1.RouterService" in results[1].stdout
        assert '"decision"' in results[3].stdout
        assert '"completion"' in results[4].stdout

    def test_loadtest(self, live: Live) -> None:
        """Each documented load test ends with every call OK."""
        for done in live.shell(snippets()["loadtest"]):
            assert re.search(r"statuses: OK \d+$", done.stdout, re.MULTILINE), done.stdout

    def test_ghz_by_hand(self, live: Live) -> None:
        """The hand-written ghz recipe: 200 calls, all OK."""
        (done,) = live.shell(snippets()["ghz"])
        assert "[OK]   200 responses" in done.stdout, done.stdout

    def test_usage(self, live: Live) -> None:
        """The usage commands print a table whose first row is the model a1 used."""
        results = live.shell(snippets()["usage"])
        assert results[1].stdout.splitlines()[2].split()[0] == "gemini-3.1-flash-lite"
        assert results[3].stdout.splitlines()[-1].startswith("total")


class TestClients:
    """The Python snippet as a script; the Go, TypeScript and Java excerpts are the examples their
    documented commands run."""

    def test_python_snippet_prints_what_its_comment_says(self, live: Live) -> None:
        """Run twice (a fresh request id each time), it prints the decision, a haiku and the error line."""
        code = snippets()["python"].code
        script = live.work / "example.py"
        script.write_text(code.replace(DOCUMENTED, live.target), encoding="utf-8")
        promised = code.rsplit("# ", 1)[1].splitlines()[0].strip()
        for _ in range(2):
            done = subprocess.run(
                [sys.executable, str(script)], cwd=live.work, capture_output=True, text=True, timeout=60, check=False
            )
            assert done.returncode == 0, done.stderr
            lines = done.stdout.strip().splitlines()
            assert lines[0].startswith("would use ")
            assert lines[-1] == promised

    @pytest.mark.parametrize(
        ("lang", "run", "timeout"),
        [("go", "go-run", 300), ("ts", "ts-run", 300), ("java", "java-run", 600)],
    )
    def test_example(self, live: Live, lang: str, run: str, timeout: float) -> None:
        """The README's excerpt is in the example file, and the documented command streams text."""
        excerpt = next(s for name, s in snippets().items() if name.startswith(f"{lang} excerpt of "))
        source = (ROOT / excerpt.name.split(" excerpt of ")[1]).read_text(encoding="utf-8")
        wanted = [line.strip() for line in excerpt.code.splitlines()]
        have = [line.strip() for line in source.splitlines()]
        assert any(have[i : i + len(wanted)] == wanted for i in range(len(have))), f"{excerpt.name} differs"
        (done,) = live.shell(snippets()[run], timeout=timeout)
        assert "# would use" in done.stderr
        assert done.stdout.strip(), done.stderr
