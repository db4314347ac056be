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

from servers import ServerThread, free_port

from equinox.integrations.gateway.app import build_app
from equinox.integrations.gateway.config import GatewayConfig, config_from_dict, hash_key
from equinox.integrations.gateway.fake_backend import FakeBackend, FakeState
from equinox.integrations.gateway.server import make_server

KEYS = {"alice": "key-alice-0123456789", "bob": "key-bob-0123456789"}
MODEL = "fake-model"
ADMIN_KEY = "key-admin-0123456789"


def auth(tenant: str) -> dict[str, str]:
    """Authorization header of a test tenant."""
    return {"Authorization": f"Bearer {KEYS[tenant]}"}


def admin() -> dict[str, str]:
    """Authorization header of the test admin key (for /metrics and the detailed /health)."""
    return {"Authorization": f"Bearer {ADMIN_KEY}"}


def make_config(backend_urls: list[str], **gateway: Any) -> GatewayConfig:
    """A gateway config with tenants alice (weight 1) and bob (weight 2) in front of `backend_urls`."""
    tenants_extra = gateway.pop("tenants_extra", {})
    concurrency = gateway.pop("concurrency", {})
    backends = gateway.pop("backends_extra", {})
    doc = {
        "gateway": {"policy": "vtc", "health_interval_s": 0.2, "backend_cooldown_s": 1.0,
                    "admin_key_sha256": hash_key(ADMIN_KEY), "drain_timeout_s": 1.0, **gateway},
        "concurrency": concurrency,
        "backends": [{"url": u, "name": f"b{i}", **backends} for i, u in enumerate(backend_urls)],
        "tenants": [
            {"name": "alice", "key_sha256": hash_key(KEYS["alice"]), "max_tokens": 512, **tenants_extra},
            {"name": "bob", "key_sha256": hash_key(KEYS["bob"]), "weight": 2.0, "max_tokens": 512, **tenants_extra},
        ],
    }
    return config_from_dict(doc, "(test)")


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
