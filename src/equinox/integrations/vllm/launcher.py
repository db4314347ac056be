"""Start vLLM's OpenAI server with the Equinox plug-in, as a subprocess (CLI, tests, benchmarks).

vLLM is not imported here: the server runs in whichever Python has vLLM installed
(`python` argument; the current interpreter by default), so the project's own test
runner can drive a vLLM installed in a separate virtual environment.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from equinox.errors import BackendError
from equinox.integrations.vllm.settings import ENV_CONFIG, ENV_METRICS_FILE, ENV_POLICY

logger = logging.getLogger(__name__)

SCHEDULER_CLS = "equinox.integrations.vllm.EquinoxScheduler"
MIDDLEWARE = "equinox.integrations.vllm.middleware.EquinoxMiddleware"
API_SERVER_MODULE = "vllm.entrypoints.openai.api_server"
SRC_DIR = Path(__file__).resolve().parents[3]  # .../src, so a non-installed checkout works too


@dataclass(frozen=True)
class ServeSpec:
    """How to start one server: model, plug-in choices, and extra vLLM arguments."""

    model: str
    policy: str | None = None
    config_file: str | None = None
    metrics_file: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    scheduler_cls: str | None = SCHEDULER_CLS  # None: vLLM's own scheduler (for comparisons)
    python: str = sys.executable
    extra_args: Sequence[str] = ()
    env: Mapping[str, str] = field(default_factory=dict)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now on `host`."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def build_command(spec: ServeSpec) -> tuple[list[str], dict[str, str]]:
    """(argv, environment) that start vLLM's OpenAI server with the Equinox plug-in."""
    argv = [spec.python, "-m", API_SERVER_MODULE, "--model", spec.model,
            "--host", spec.host, "--port", str(spec.port)]
    env = dict(os.environ)
    if spec.scheduler_cls:
        argv += ["--scheduler-cls", spec.scheduler_cls, "--middleware", MIDDLEWARE]
        if spec.config_file:
            env[ENV_CONFIG] = str(Path(spec.config_file).resolve())
        if spec.policy:
            env[ENV_POLICY] = spec.policy
        if spec.metrics_file:
            env[ENV_METRICS_FILE] = str(spec.metrics_file)
        # Both vLLM processes must import equinox: make a plain checkout importable too.
        paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        if str(SRC_DIR) not in paths and (SRC_DIR / "equinox").is_dir():
            env["PYTHONPATH"] = os.pathsep.join([str(SRC_DIR), *paths])
    argv += list(spec.extra_args)
    env.update(spec.env)
    return argv, env


class VllmServer:
    """A running vLLM server subprocess; use as a context manager (stops it on exit)."""

    def __init__(self, spec: ServeSpec, log_path: str | Path, startup_timeout_s: float = 240.0) -> None:
        self.spec = spec
        self.log_path = Path(log_path)
        self.startup_timeout_s = startup_timeout_s
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        """http://host:port of the server."""
        return f"http://{self.spec.host}:{self.spec.port}"

    def start(self) -> VllmServer:
        """Launch the server and wait until it answers /v1/models."""
        argv, env = build_command(self.spec)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "wb")
        logger.info("starting vLLM: %s", " ".join(argv))
        self.process = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BackendError(f"vLLM exited with code {self.process.returncode} during start-up; "
                                   f"last log lines:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.base_url + "/v1/models", timeout=2) as resp:
                    if resp.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.5)
        self.stop()
        raise BackendError(f"vLLM did not become ready in {self.startup_timeout_s:.0f} s; "
                           f"last log lines:\n{self.log_tail()}")

    def log_tail(self, num_lines: int = 40) -> str:
        """The last lines of the server log."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-num_lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM the server's process group, then SIGKILL it if it does not exit in time."""
        proc = self.process
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        except ProcessLookupError:
            pass

    def __enter__(self) -> VllmServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def fetch_json(url: str, timeout_s: float = 10.0) -> object:
    """GET a JSON document."""
    with urllib.request.urlopen(url, timeout=timeout_s) as resp:
        return json.loads(resp.read())
