"""Settings of the vLLM plug-in: one TOML file named by `EQUINOX_VLLM_CONFIG`, plus env overrides.

Both vLLM processes read the same file: the engine core (scheduler: policy, weights,
batching bounds, metrics) and the API server (middleware: tenant key and validation).
Example::

    policy = "vtc"                 # any name of equinox.scheduling.policy.policy_names()
    tenant_key = "tenant"          # vllm_xargs key that carries the tenant id
    default_tenant = "default"     # requests without a tenant go here
    admit_unknown_tenants = true   # false: ids not in [tenant_weights] go to default_tenant
    prompt_weight = 1.0
    output_weight = 2.0
    [tenant_weights]
    gold = 2.0
    [policy_params]                # policy-specific knobs, passed through
    [batching]
    min_num_batched_tokens = 256   # adaptive batching may move vLLM's token budget
    max_num_batched_tokens = 2048  # within these bounds (default: vLLM's setting)
    [platform]
    gpu = "auto"                   # RFC cost constants: "auto" (CUDA device name), "proxy" or a
                                   # GPU of equinox.sim.hardware (e.g. "h100-80gb"); see platform.py
    [metrics]
    file = "/tmp/equinox-vllm-metrics.json"  # snapshot the API server's /metrics appends
    port = 9400                    # optional side port serving the same metrics
    log_interval_s = 10.0
    [global_counters]              # off unless sync_interval_s is set (issue 14; needs Ray)
    sync_interval_s = 0.5          # Δ: report to / read from the counter actor this often
    address = "auto"               # the Ray cluster (ray.init address; "auto": RAY_ADDRESS or the local one)
    actor = "equinox-counters"     # the named counter actor (created, detached, when absent)
    namespace = "equinox"          # its Ray namespace (the one `equinox serve --ray` uses)
    replica = "vllm-0"             # this engine's name at the actor (default: host:pid)
    timeout_s = 10.0               # a merge unanswered this long is given up (logged) and resent
    snapshot = "/shared/counters.json"  # the actor's snapshot when this engine creates it
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from equinox.errors import ConfigError
from equinox.request import DEFAULT_TENANT
from equinox.scheduling.interface import PolicyConfig
from equinox.tomlfile import read_toml

ENV_CONFIG = "EQUINOX_VLLM_CONFIG"
ENV_POLICY = "EQUINOX_VLLM_POLICY"
ENV_METRICS_FILE = "EQUINOX_VLLM_METRICS_FILE"
ENV_METRICS_PORT = "EQUINOX_VLLM_METRICS_PORT"
ENV_SYNC_INTERVAL = "EQUINOX_VLLM_SYNC_INTERVAL"  # [global_counters] sync_interval_s (turns the sync on)
ENV_REPLICA = "EQUINOX_VLLM_REPLICA"  # [global_counters] replica
ENV_RAY_ADDRESS = "EQUINOX_VLLM_RAY_ADDRESS"  # [global_counters] address

MAX_TENANT_LEN = 128
TENANT_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@/-]*$")

_TOP_KEYS = {
    "policy", "tenant_key", "default_tenant", "admit_unknown_tenants", "prompt_weight",
    "output_weight", "rpm_limit", "rpm_limits", "tenant_weights", "policy_params",
    "batching", "metrics", "platform", "global_counters",
}
_BATCHING_KEYS = {"min_num_batched_tokens", "max_num_batched_tokens"}
_PLATFORM_KEYS = {"gpu"}
_METRICS_KEYS = {"file", "port", "log_interval_s", "write_interval_s"}
_GLOBAL_KEYS = {"sync_interval_s", "address", "actor", "namespace", "replica", "timeout_s", "snapshot"}


@dataclass(frozen=True)
class GlobalCounterSettings:
    """The engine's sync with the cluster's counter actor (issue 14; docs/scale-out.md)."""

    sync_interval_s: float
    address: str = "auto"
    actor: str = "equinox-counters"  # integrations/ray/counters.py ACTOR_NAME (not imported: no Ray here)
    namespace: str = "equinox"  # integrations/ray/serve_app.py COUNTER_NAMESPACE
    replica: str = ""  # "" : host:pid of the engine process
    timeout_s: float = 10.0
    snapshot: str | None = None
    source: str = "(defaults)"

    def __post_init__(self) -> None:
        where = f"{self.source}: [global_counters]"
        for name in ("sync_interval_s", "timeout_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                    value > 0 and math.isfinite(value)):
                raise ConfigError(f"{where} {name} must be a positive number of seconds, got {value!r}")
        for name in ("address", "actor", "namespace", "replica"):
            if not isinstance(getattr(self, name), str):
                raise ConfigError(f"{where} {name} must be a string, got {getattr(self, name)!r}")
        for name in ("address", "actor", "namespace"):
            if not getattr(self, name):
                raise ConfigError(f"{where} {name} must not be empty")
        if self.snapshot is not None and not (isinstance(self.snapshot, str) and self.snapshot):
            raise ConfigError(f"{where} snapshot must be a file path, got {self.snapshot!r}")


@dataclass(frozen=True)
class PluginSettings:
    """Everything the vLLM plug-in is configured with."""

    policy: str = "vtc"
    tenant_key: str = "tenant"
    default_tenant: str = DEFAULT_TENANT
    admit_unknown_tenants: bool = True
    prompt_weight: float = 1.0
    output_weight: float = 2.0
    rpm_limit: float | None = None
    rpm_limits: Mapping[str, float] = field(default_factory=dict)
    tenant_weights: Mapping[str, float] = field(default_factory=dict)
    policy_params: Mapping[str, Any] = field(default_factory=dict)
    min_num_batched_tokens: int | None = None
    max_num_batched_tokens: int | None = None
    metrics_file: str | None = None
    metrics_port: int | None = None
    log_interval_s: float = 10.0
    write_interval_s: float = 0.5
    platform_gpu: str = "auto"  # "auto", "proxy" or a hardware-registry GPU (integrations/vllm/platform.py)
    global_counters: GlobalCounterSettings | None = None  # None: this engine's counters only
    source: str = "(defaults)"

    def __post_init__(self) -> None:
        where = self.source
        for name in ("prompt_weight", "output_weight"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and value > 0 and math.isfinite(value)):
                raise ConfigError(f"{where}: {name} must be a positive number, got {value!r}")
        for tenant, weight in self.tenant_weights.items():
            if not (isinstance(weight, (int, float)) and weight > 0 and math.isfinite(weight)):
                raise ConfigError(f"{where}: weight of tenant {tenant!r} must be > 0, got {weight!r}")
        if not self.tenant_key:
            raise ConfigError(f"{where}: tenant_key must be a non-empty string")
        if check_tenant_id(self.default_tenant) is not None:
            raise ConfigError(f"{where}: default_tenant {self.default_tenant!r} is not a valid tenant id")
        lo, hi = self.min_num_batched_tokens, self.max_num_batched_tokens
        for name, value in (("min_num_batched_tokens", lo), ("max_num_batched_tokens", hi)):
            if value is not None and not (isinstance(value, int) and value > 0):
                raise ConfigError(f"{where}: batching.{name} must be a positive integer, got {value!r}")
        if lo is not None and hi is not None and lo > hi:
            raise ConfigError(f"{where}: batching.min_num_batched_tokens ({lo}) > max_num_batched_tokens ({hi})")
        if self.metrics_port is not None and not 0 < self.metrics_port < 65536:
            raise ConfigError(f"{where}: metrics.port must be in 1..65535, got {self.metrics_port}")
        if not self.log_interval_s > 0 or not self.write_interval_s > 0:
            raise ConfigError(f"{where}: metrics intervals must be > 0 seconds")
        from equinox.integrations.vllm.platform import check_gpu_setting

        object.__setattr__(self, "platform_gpu", check_gpu_setting(self.platform_gpu, where))

    def policy_config(self) -> PolicyConfig:
        """The PolicyConfig handed to `make_policy`."""
        return PolicyConfig(
            tenant_weights=dict(self.tenant_weights), prompt_weight=self.prompt_weight,
            output_weight=self.output_weight, rpm_limit=self.rpm_limit,
            rpm_limits=dict(self.rpm_limits), params=dict(self.policy_params),
        )

    def resolve_tenant(self, extra_args: Mapping[str, Any] | None) -> tuple[str, str | None]:
        """(tenant, problem) for a request's `extra_args`; never raises.

        A missing id gives the default tenant; an id not configured when
        `admit_unknown_tenants` is false gives the default tenant; a malformed id
        gives the default tenant and a problem description (the middleware turns
        that into a 400 before the request ever reaches the engine).
        """
        if not extra_args or self.tenant_key not in extra_args:
            return self.default_tenant, None
        value = extra_args[self.tenant_key]
        problem = check_tenant_id(value)
        if problem is not None:
            return self.default_tenant, problem
        if not self.admit_unknown_tenants and value not in self.tenant_weights:
            return self.default_tenant, None
        return str(value), None


def check_tenant_id(value: object) -> str | None:
    """Why `value` is not a usable tenant id, or None when it is."""
    if not isinstance(value, str):
        return f"tenant id must be a string, got {type(value).__name__}"
    if not value:
        return "tenant id must not be empty"
    if len(value) > MAX_TENANT_LEN:
        return f"tenant id is longer than {MAX_TENANT_LEN} characters"
    if not TENANT_PATTERN.match(value):
        return "tenant id may contain only letters, digits and . _ : @ / - (starting with a letter or digit)"
    return None


def _table(data: Mapping[str, Any], key: str, known: set[str], where: str) -> dict[str, Any]:
    table = data.get(key, {})
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: [{key}] must be a table")
    unknown = sorted(set(table) - known)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) in [{key}]: {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    return table


def settings_from_dict(data: Mapping[str, Any], source: str = "(dict)") -> PluginSettings:
    """Build settings from parsed TOML; unknown keys are an error naming the key."""
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(_TOP_KEYS))}")
    batching = _table(data, "batching", _BATCHING_KEYS, source)
    metrics = _table(data, "metrics", _METRICS_KEYS, source)
    platform = _table(data, "platform", _PLATFORM_KEYS, source)
    global_counters = _table(data, "global_counters", _GLOBAL_KEYS, source)
    flat = {k: v for k, v in data.items() if k not in ("batching", "metrics", "platform", "global_counters")}
    for key in ("tenant_weights", "rpm_limits", "policy_params"):
        if key in flat and not isinstance(flat[key], dict):
            raise ConfigError(f"{source}: [{key}] must be a table")
    try:
        return PluginSettings(
            **flat, **batching,
            metrics_file=metrics.get("file"), metrics_port=metrics.get("port"),
            log_interval_s=float(metrics.get("log_interval_s", 10.0)),
            write_interval_s=float(metrics.get("write_interval_s", 0.5)),
            platform_gpu=platform.get("gpu", "auto"), source=source,
            global_counters=_global_counters(global_counters, source),
        )
    except TypeError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def _global_counters(table: dict[str, Any], source: str) -> GlobalCounterSettings | None:
    """[global_counters] as settings; None (off) without sync_interval_s."""
    if "sync_interval_s" not in table:
        if table:
            raise ConfigError(f"{source}: [global_counters] needs sync_interval_s (seconds) to turn the sync on "
                              f"(or set {ENV_SYNC_INTERVAL})")
        return None
    return GlobalCounterSettings(**table, source=source)


def load_settings(environ: Mapping[str, str] | None = None) -> PluginSettings:
    """Settings from the file named by EQUINOX_VLLM_CONFIG (if any) and env overrides."""
    env = os.environ if environ is None else environ
    data: dict[str, Any] = {}
    source = "(defaults)"
    path = env.get(ENV_CONFIG)
    if path:
        p = Path(path)
        source = str(p)
        data = read_toml(p, hint=f"named by {ENV_CONFIG}")
    if env.get(ENV_POLICY):
        data["policy"] = env[ENV_POLICY]
    metrics = dict(data.get("metrics", {})) if isinstance(data.get("metrics", {}), dict) else data["metrics"]
    if env.get(ENV_METRICS_FILE):
        metrics["file"] = env[ENV_METRICS_FILE]
    if env.get(ENV_METRICS_PORT):
        try:
            metrics["port"] = int(env[ENV_METRICS_PORT])
        except ValueError:
            raise ConfigError(f"{ENV_METRICS_PORT} must be an integer port, got {env[ENV_METRICS_PORT]!r}") from None
    if metrics:
        data["metrics"] = metrics
    sync = data.get("global_counters", {})
    if isinstance(sync, dict):  # (not a table: settings_from_dict says so)
        sync = dict(sync)
        if env.get(ENV_SYNC_INTERVAL):
            try:
                sync["sync_interval_s"] = float(env[ENV_SYNC_INTERVAL])
            except ValueError:
                raise ConfigError(f"{ENV_SYNC_INTERVAL} must be a number of seconds, "
                                  f"got {env[ENV_SYNC_INTERVAL]!r}") from None
        for name, key in ((ENV_REPLICA, "replica"), (ENV_RAY_ADDRESS, "address")):
            if env.get(name):
                sync[key] = env[name]
        if sync:
            data["global_counters"] = sync
    return settings_from_dict(data, source)
