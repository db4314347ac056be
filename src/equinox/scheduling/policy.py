"""The policy registry: every policy is one file in `policies/` plus one entry here."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from equinox.registry import Registry
from equinox.scheduling.interface import Policy, PolicyConfig

PolicyFactory = Callable[[PolicyConfig], Policy]

POLICIES: Registry[PolicyFactory] = Registry("policy")


def _load_builtin() -> None:
    # Importing the modules registers them; kept lazy so `import equinox` stays cheap.
    from equinox.scheduling.policies import equinox, fcfs, rpm, vtc  # noqa: F401


def make_policy(name: str, config: PolicyConfig | None = None) -> Policy:
    """Build the policy registered as `name`."""
    _load_builtin()
    return POLICIES.get(name)(config or PolicyConfig())


def policy_names() -> list[str]:
    """Names of all registered policies."""
    _load_builtin()
    return POLICIES.names()


def policy_params(policy: Policy) -> dict[str, Any]:
    """The parameters `policy` runs with, JSON-safe (for snapshots and reports)."""
    params = getattr(policy, "params", None)
    if dataclasses.is_dataclass(params) and not isinstance(params, type):
        return dataclasses.asdict(params)
    return dict(policy.config.params)
