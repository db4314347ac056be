"""Run configuration: one frozen object built by the CLI or from a TOML file."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from equinox.errors import ConfigError
from equinox.sim.engine import EngineConfig
from equinox.sim.frontend import FrontendModel
from equinox.tomlfile import read_toml

DEFAULT_WORKLOAD = "overload"


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines a simulated run (same config and seed, same bytes out)."""

    workload: str = DEFAULT_WORKLOAD
    policy: str = "vtc"
    seed: int = 0
    duration_s: float | None = None
    rate_scale: float = 1.0
    num_tenants: int | None = None
    gpu: str = "a10g"
    model: str = "llama-2-7b"
    tensor_parallel: int = 1
    cost_model: str = "auto"
    runtime_scale: float = 1.0  # the serving runtime: every iteration time x this (sim/cost_models/runtime.py)
    decode_scale: float | None = None  # ... decode-only iterations x this instead (None: runtime_scale)
    step_overhead_s: float = 0.0  # ... plus this per iteration
    seq_overhead_s: float = 0.0  # ... plus this per sequence in the iteration
    engine_mode: str = "vllm"
    max_num_batched_tokens: int | None = None  # None: the engine's default (vllm 2048; slora max(pool / 6, 3072))
    max_num_seqs: int | None = None  # None: the engine's default (vllm 256; slora running_max_req_size 1000)
    block_size: int = 16
    num_kv_blocks: int | None = None  # None: derived from GPU memory
    kv_capacity_tokens: int | None = None  # alternative to num_kv_blocks
    enable_chunked_prefill: bool | None = None
    admission_interval_steps: int = 10
    kv_admission: str | None = None  # slora: "peak" (S-LoRA's rule) or "reserve-all"
    lora_rank: int = 0  # slora: 4 x rank KV tokens set aside per adapter (tenant) in the batch
    max_req_total_len: int = 3072  # slora: S-LoRA's launcher argument (batch_max_tokens >= it by default)
    long_prefill_token_threshold: int = 0  # vllm: max tokens of one request per step with company (0: off)
    async_scheduling: bool = False  # vllm: plan each step while the previous one runs (one-step lag)
    prompt_weight: float = 1.0
    output_weight: float = 2.0
    rpm_limit: float | None = None
    tenant_weights: Mapping[str, float] = field(default_factory=dict)
    policy_params: Mapping[str, Any] = field(default_factory=dict)
    interval_s: float = 1.0
    window_s: float = 60.0
    warmup_s: float = 30.0
    until_s: float | None = None
    # The API server around the engine (sim/frontend.py); all zero: a bare engine.
    frontend_ingress_s: float = 0.0
    frontend_ingress_per_token_s: float = 0.0
    frontend_egress_s: float = 0.0
    frontend_egress_per_token_s: float = 0.0

    def __post_init__(self) -> None:
        positive = {
            "rate_scale": self.rate_scale, "interval_s": self.interval_s, "window_s": self.window_s,
            "prompt_weight": self.prompt_weight, "output_weight": self.output_weight,
        }
        for name, value in positive.items():
            if not (isinstance(value, (int, float)) and value > 0 and math.isfinite(value)):
                raise ConfigError(f"{name} must be a positive number, got {value!r}")
        if self.warmup_s < 0:
            raise ConfigError(f"warmup_s must be >= 0, got {self.warmup_s}")
        for name in ("duration_s", "until_s", "rpm_limit"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ConfigError(f"{name} must be > 0, got {value!r}")
        if self.num_tenants is not None and self.num_tenants < 1:
            raise ConfigError(f"num_tenants must be >= 1, got {self.num_tenants}")
        if self.block_size < 1:
            raise ConfigError(f"block_size must be >= 1 token, got {self.block_size}")
        if self.num_kv_blocks is not None and self.kv_capacity_tokens is not None:
            raise ConfigError("set either num_kv_blocks or kv_capacity_tokens, not both")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"seed must be a non-negative integer, got {self.seed!r}")
        if self.num_kv_blocks is not None and self.num_kv_blocks < 1:
            raise ConfigError(f"num_kv_blocks (--kv-blocks) must be >= 1, got {self.num_kv_blocks}")
        min_kv_tokens = 1 if self.engine_mode == "slora" else self.block_size  # slora's pool is token-granular
        if self.kv_capacity_tokens is not None and self.kv_capacity_tokens < min_kv_tokens:
            raise ConfigError(f"kv_capacity_tokens (--kv-tokens) must hold at least one KV block of "
                              f"{min_kv_tokens} token(s), got {self.kv_capacity_tokens}")
        for tenant, weight in self.tenant_weights.items():
            if not weight > 0:
                raise ConfigError(f"weight of tenant {tenant!r} must be > 0, got {weight!r}")
        for name in ("frontend_ingress_s", "frontend_ingress_per_token_s", "frontend_egress_s",
                     "frontend_egress_per_token_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                    value >= 0 and math.isfinite(value)):
                raise ConfigError(f"{name} must be a finite number of seconds >= 0, got {value!r}")

    def frontend(self) -> FrontendModel:
        """The front-end model around the engine (inactive when every frontend_* is zero)."""
        return FrontendModel(self.frontend_ingress_s, self.frontend_ingress_per_token_s, self.frontend_egress_s,
                             self.frontend_egress_per_token_s)

    def engine_config(self, derived_kv_blocks: int) -> EngineConfig:
        """The mechanism settings, with KV capacity derived from hardware unless given."""
        if self.num_kv_blocks is not None:
            blocks = self.num_kv_blocks
        elif self.kv_capacity_tokens is not None:
            blocks = self.kv_capacity_tokens // self.block_size
        else:
            blocks = derived_kv_blocks
        block_size = self.block_size
        if self.engine_mode == "slora" and self.kv_admission in (None, "peak"):
            # S-LoRA's pool is token-granular: exactly the tokens asked for (--kv-tokens 35000 is 35,000).
            blocks = self.kv_capacity_tokens if self.kv_capacity_tokens is not None else blocks * block_size
            block_size = 1
        return EngineConfig(
            mode=self.engine_mode, max_num_batched_tokens=self.max_num_batched_tokens,  # type: ignore[arg-type]
            max_num_seqs=self.max_num_seqs,  # type: ignore[arg-type]  # None: the engine's default
            block_size=block_size, num_kv_blocks=blocks,
            enable_chunked_prefill=self.enable_chunked_prefill,
            admission_interval_steps=self.admission_interval_steps,
            kv_admission=self.kv_admission, lora_rank=self.lora_rank, max_req_total_len=self.max_req_total_len,
            long_prefill_token_threshold=self.long_prefill_token_threshold, async_scheduling=self.async_scheduling,
        )

    def replace(self, **changes: Any) -> RunConfig:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        d = dataclasses.asdict(self)
        d["tenant_weights"] = dict(self.tenant_weights)
        d["policy_params"] = dict(self.policy_params)
        return d


def load_config_file(path: str | Path, base: RunConfig | None = None) -> RunConfig:
    """Read a TOML run config; unknown keys are an error naming the key."""
    p = Path(path)
    data = read_toml(p)
    known = {f.name for f in dataclasses.fields(RunConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{p}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    hints = typing.get_type_hints(RunConfig)
    for key, value in data.items():
        expected = _type_mismatch(value, hints[key])
        if expected is not None:
            raise ConfigError(f"{p}: key {key!r} must be {expected}, got {value!r}")
    try:
        return (base or RunConfig()).replace(**data)
    except TypeError as exc:
        raise ConfigError(f"{p}: {exc}") from None


_TYPE_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
_PLURAL_NAMES = {bool: "booleans", int: "integers", float: "numbers", str: "strings"}


def _type_mismatch(value: Any, hint: Any) -> str | None:
    """What a TOML value should have been for the field type `hint`, or None when it fits."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        options = [a for a in args if a is not type(None)]
        if all(_type_mismatch(value, a) is not None for a in options):
            return " or ".join(_type_mismatch(None, a) or "" for a in options)
        return None
    if origin is not None and isinstance(origin, type) and issubclass(origin, Mapping):
        if not isinstance(value, dict):
            return "a table"
        if len(args) == 2 and args[1] is not Any:
            for v in value.values():
                if _type_mismatch(v, args[1]) is not None:
                    return f"a table of {_PLURAL_NAMES.get(args[1], str(args[1]))}"
        return None
    if hint is Any:
        return None
    ok = {
        bool: lambda v: isinstance(v, bool),
        int: lambda v: isinstance(v, int) and not isinstance(v, bool),
        float: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        str: lambda v: isinstance(v, str),
    }.get(hint)
    if ok is None or ok(value):
        return None
    return _TYPE_NAMES[hint]
