"""The Equinox gateway: an OpenAI-compatible front door that authenticates tenants and queues them fairly.

Needs the `gateway` extra (starlette, uvicorn, httpx, prometheus-client); they are
imported only when an app is built, so `import equinox` does not need them.
See docs/gateway.md for the operator guide.
"""

from __future__ import annotations

from equinox.integrations.gateway.config import (
    BackendConfig,
    ConcurrencyConfig,
    GatewayConfig,
    TenantConfig,
    config_from_dict,
    hash_key,
    load_config,
    new_key,
)

__all__ = [
    "BackendConfig",
    "ConcurrencyConfig",
    "GatewayConfig",
    "TenantConfig",
    "config_from_dict",
    "hash_key",
    "load_config",
    "new_key",
]
