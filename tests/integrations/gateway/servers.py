"""Helpers that run ASGI apps and fake backends on loopback for the gateway tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

SRC = Path(__file__).resolve().parents[3] / "src"


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerThread:
    """Runs an ASGI app on uvicorn in a daemon thread (127.0.0.1 only)."""

    def __init__(self, app: Any, port: int | None = None, server: Any = None) -> None:
        import uvicorn

        self.port = port or free_port()
        if server is None:
            config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", access_log=False,
                                    lifespan="on", timeout_graceful_shutdown=1)
            server = uvicorn.Server(config)
        self.server = server
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        """Base URL."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServerThread:
        """Start and wait (at most 10 s) until it listens."""
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Shut it down (bounded)."""
        self.server.should_exit = True
        self.thread.join(10)


class FakeProcess:
    """The fake backend in a subprocess, so a test can SIGKILL it like a crashed engine."""

    def __init__(self, *args: str) -> None:
        self.port = free_port()
        env = {**os.environ, "PYTHONPATH": str(SRC)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "equinox.integrations.gateway.fake_backend", "--port", str(self.port), *args],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.kill()
                raise RuntimeError("fake backend did not start")
            time.sleep(0.05)

    @property
    def url(self) -> str:
        """Base URL."""
        return f"http://127.0.0.1:{self.port}"

    def kill(self) -> None:
        """SIGKILL (a crash), and reap."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
