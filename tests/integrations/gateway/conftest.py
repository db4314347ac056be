"""Fixtures: fake OpenAI-compatible backends and gateways on loopback, torn down after each test."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
pytest.importorskip("httpx")
pytest.importorskip("prometheus_client")

sys.path.insert(0, str(Path(__file__).parent))

from gateway_helpers import MODEL, make_config
from servers import ServerThread, free_port

from equinox.integrations.gateway.app import build_app
from equinox.integrations.gateway.fake_backend import FakeBackend, FakeState
from equinox.integrations.gateway.server import make_server


@pytest.fixture
def start_server() -> Iterator[Callable[[Any], ServerThread]]:
    """Start ASGI apps on loopback; all are stopped at the end of the test."""
    started: list[ServerThread] = []

    def start(app: Any, server: Any = None, port: int | None = None) -> ServerThread:
        thread = ServerThread(app, port=port, server=server).start()
        started.append(thread)
        return thread

    yield start
    for server in reversed(started):
        server.stop()


@pytest.fixture
def fake(start_server: Callable[[Any], ServerThread]) -> Callable[..., tuple[ServerThread, FakeState]]:
    """Start a fake backend: fake(ttft_s=..., itl_s=..., mode=...) -> (server, state)."""

    def make(**kwargs: Any) -> tuple[ServerThread, FakeState]:
        state = FakeState(models=(MODEL,), **kwargs)
        return start_server(FakeBackend(state)), state

    return make


@pytest.fixture
def gateway(start_server: Callable[[Any], ServerThread]) -> Callable[..., ServerThread]:
    """Start a gateway: gateway([backend urls], **[gateway] keys) -> server (app.state.gateway is the state)."""

    def make(urls: list[str], **kwargs: Any) -> ServerThread:
        config = make_config(urls, **kwargs)
        app = build_app(config)
        port = free_port()
        return start_server(app, make_server(app, config, port=port), port)

    return make
