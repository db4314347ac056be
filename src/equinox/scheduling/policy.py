"""The policy registry: every policy is one file in `policies/` plus one entry here.

Each policy declares its typed parameters (`Policy.params_class`, `param_names`,
`parse_params`); the registry checks `PolicyConfig.params` against them when it builds a
policy, and answers for reports, experiments and `equinox compare`, which ask here
rather than test policy names.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from equinox.registry import Registry
from equinox.scheduling.interface import Policy, PolicyConfig

PolicyFactory = Callable[[PolicyConfig], Policy]

POLICIES: Registry[PolicyFactory] = Registry("policy")


def _load_builtin() -> None:
    # Importing the modules registers them; kept lazy so `import equinox` stays cheap.
    from equinox.scheduling.policies import equinox, fcfs, rpm, vtc  # noqa: F401


def _policy_type(name: str) -> type[Policy] | None:
    """The registered class (None for a factory that is not a Policy subclass)."""
    _load_builtin()
    entry = POLICIES.get(name)
    return entry if isinstance(entry, type) and issubclass(entry, Policy) else None


def make_policy(name: str, config: PolicyConfig | None = None) -> Policy:
    """Build the policy registered as `name`, its `params` checked against the policy's parameters."""
    config = config or PolicyConfig()
    parse_policy_params(name, config.params)
    return POLICIES.get(name)(config)


def policy_names() -> list[str]:
    """Names of all registered policies."""
    _load_builtin()
    return POLICIES.names()


def parse_policy_params(name: str, params: Mapping[str, object]) -> Any:
    """`params` as policy `name`'s typed parameters (None when it takes none). A ConfigError names
    the policy, the unknown or ill-typed key and the valid keys."""
    cls = _policy_type(name)
    return None if cls is None else cls.parse_params(params)


def policy_params_class(name: str) -> type[Any] | None:
    """The frozen dataclass policy `name` parses its params into (None: it takes none)."""
    cls = _policy_type(name)
    return None if cls is None else cls.params_class


def policy_param_names(name: str) -> list[str]:
    """The parameter names policy `name` accepts (sorted)."""
    cls = _policy_type(name)
    return [] if cls is None else cls.param_names()


def policy_param_defaults(name: str) -> dict[str, Any]:
    """Every parameter of policy `name` with its default value."""
    defaults = parse_policy_params(name, {})
    if defaults is None or not dataclasses.is_dataclass(defaults) or isinstance(defaults, type):
        return {}
    names = set(policy_param_names(name))
    return {k: v for k, v in dataclasses.asdict(defaults).items() if k in names}


def params_for_policy(name: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """The subset of `params` policy `name` accepts (for runs that give several policies one set)."""
    names = set(policy_param_names(name))
    return {k: v for k, v in params.items() if k in names}


def policy_params(policy: Policy) -> dict[str, Any]:
    """The parameters `policy` runs with, every one with its value, JSON-safe (snapshots, reports)."""
    params = getattr(policy, "params", None)
    if dataclasses.is_dataclass(params) and not isinstance(params, type):
        names = set(policy.param_names()) or {f.name for f in dataclasses.fields(params)}
        return {k: v for k, v in dataclasses.asdict(params).items() if k in names}
    return dict(policy.config.params)
