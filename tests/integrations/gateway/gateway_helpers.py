"""Shared by the gateway tests: test tenants and keys, and a gateway config in front of given backends.

A module of its own (not conftest.py): several test directories have a conftest.py, and
`from conftest import ...` resolves to whichever of them was imported last.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from equinox.integrations.gateway.config import GatewayConfig, config_from_dict, hash_key

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


def settled(value: Callable[[], Any], expected: Any, timeout_s: float = 2.0) -> Any:
    """`value()` once it equals `expected`, or its last reading after `timeout_s`: a fake backend counts a
    stream finished after its last write, which the client may have read (and the test moved on) first."""
    deadline = time.monotonic() + timeout_s
    seen = value()
    while seen != expected and time.monotonic() < deadline:
        time.sleep(0.01)
        seen = value()
    return seen
