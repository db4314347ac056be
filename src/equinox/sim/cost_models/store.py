"""Loads the fitted coefficient files shipped in `equinox.sim.profiles` (no access to ../shared)."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from equinox.errors import ConfigError

PROFILES_PACKAGE = "equinox.sim.profiles"


@cache
def load_profile(name: str) -> dict[str, Any]:
    """The parsed `<name>.json` coefficient file; ConfigError if it is missing or malformed."""
    try:
        text = resources.files(PROFILES_PACKAGE).joinpath(f"{name}.json").read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"cost-model profile {name}.json is missing from {PROFILES_PACKAGE}; "
            "regenerate it with tools/fit_cost_models.py or reinstall equinox"
        ) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"cost-model profile {name}.json: line {exc.lineno}: {exc.msg}") from None
    if not isinstance(data, dict) or "deployments" not in data:
        raise ConfigError(f"cost-model profile {name}.json has no 'deployments' table")
    return data


def deployment_key(gpu: str, model: str, tensor_parallel: int) -> str:
    """The key under which a profile stores one deployment, e.g. `llama-2-70b@a100-80gb/tp4`."""
    return f"{model}@{gpu}/tp{tensor_parallel}"
