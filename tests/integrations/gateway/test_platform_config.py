"""The gateway's optional [platform] table: the policy gets the hardware's Platform, else token proxies."""

from __future__ import annotations

from typing import Any

import pytest

from equinox.errors import ConfigError
from equinox.integrations.gateway.config import config_from_dict, hash_key
from equinox.integrations.gateway.runtime import GatewayState
from equinox.scheduling.interface import Platform
from equinox.sim.hardware import make_deployment


def doc(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "backends": [{"url": "http://127.0.0.1:8000"}],
        "tenants": [{"name": "a", "key_sha256": hash_key("k")}],
    }
    base.update(over)
    return base


def test_without_platform_the_policy_uses_token_proxies() -> None:
    state = GatewayState(config_from_dict(doc()))
    assert state.policy.platform == Platform.proxy()


def test_platform_table_gives_the_simulators_platform() -> None:
    cfg = config_from_dict(doc(platform={"gpu": "h100-80gb", "model": "llama-2-70b", "tensor_parallel": 4}))
    state = GatewayState(cfg)
    assert state.policy.platform == make_deployment("h100-80gb", "llama-2-70b", 4).platform()
    assert state.policy.platform.name == "llama-2-70b@h100-80gbx4"


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"gpu": "h100-80gb"}, r"\[platform\] needs both gpu and model"),
        ({"gpu": "b200", "model": "llama-2-7b"}, r"\[platform\]: unknown GPU 'b200'"),
        ({"gpu": "a10g", "model": "llama-2-70b"}, r"\[platform\]: llama-2-70b weights .* do not fit"),
        ({"gpu": "a10g", "model": "llama-2-7b", "tensor_parallel": 0}, "tensor_parallel must be an integer >= 1"),
        ({"gpu": "a10g", "model": "llama-2-7b", "hbm": 1}, r"unknown key\(s\) hbm"),
        ("a10g", r"\[platform\] must be a table"),
    ],
)
def test_platform_mistakes_name_the_key(table: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config_from_dict(doc(platform=table), "gw.toml")
