"""Mechanism settings of one simulated engine replica (shared by every engine model)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

from equinox.errors import ConfigError
from equinox.types import BatchLimits

if TYPE_CHECKING:
    from equinox.sim.engine.base import Engine


@dataclass(frozen=True)
class EngineConfig:
    """Mechanism settings of one engine replica; `mode` names the engine model (registry.py)."""

    mode: str = "vllm"
    # None: the engine's default (vllm: 2048 / 256; slora: batch_max_tokens = max(pool / 6, 3072)
    # and running_max_req_size = 1000, as S-LoRA's launcher sets them).
    max_num_batched_tokens: int = None  # type: ignore[assignment]  # resolved in __post_init__
    max_num_seqs: int = None  # type: ignore[assignment]
    block_size: int = 16
    num_kv_blocks: int = 8192  # the pool holds num_kv_blocks * block_size tokens (slora: token-granular)
    enable_chunked_prefill: bool | None = None  # None: the engine's default (on for vllm, never for slora)
    admission_interval_steps: int = 10  # slora: S-LoRA's max_wait_tokens (decode steps before new requests count)
    kv_admission: str | None = None  # slora: "peak" (S-LoRA's rule, default) or "reserve-all" (the old model)
    lora_rank: int = 0  # slora: KV tokens 4 x rank per adapter (tenant) in the batch are set aside, as S-LoRA does
    max_req_total_len: int = 3072  # slora: S-LoRA's launcher argument; batch_max_tokens defaults to max(pool / 6, this)
    # vllm: vLLM's long_prefill_token_threshold (0: off): at most this many tokens of one request
    # per step while two or more requests run or wait.
    long_prefill_token_threshold: int = 0
    # vllm: plan step n while step n-1 runs (vLLM's --async-scheduling); docs/algorithm.md says how.
    async_scheduling: bool = False

    def __post_init__(self) -> None:
        cls = self.engine_class  # an unknown engine name fails here, naming the known ones
        for name, value in cls.default_limits(self).items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)
        for name in ("max_num_batched_tokens", "max_num_seqs", "block_size", "num_kv_blocks"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.admission_interval_steps < 1:
            raise ConfigError(f"admission_interval_steps must be >= 1, got {self.admission_interval_steps}")
        if self.max_req_total_len < 1:
            raise ConfigError(f"max_req_total_len must be >= 1, got {self.max_req_total_len}")
        if self.lora_rank < 0:
            raise ConfigError(f"lora_rank must be >= 0, got {self.lora_rank}")
        if self.long_prefill_token_threshold < 0:
            raise ConfigError(f"long_prefill_token_threshold must be >= 0, got {self.long_prefill_token_threshold}")
        for name in ("long_prefill_token_threshold", "async_scheduling"):
            if getattr(self, name) and name not in cls.options:
                raise ConfigError(f"engine {self.mode!r} has no {name} setting (engine 'vllm' has)")
        cls.check_config(self)  # engine-specific rules

    @property
    def capacity_tokens(self) -> int:
        """Tokens the KV pool holds."""
        return self.num_kv_blocks * self.block_size

    @property
    def engine_class(self) -> type[Engine]:
        """The engine model registered under `mode`."""
        from equinox.sim.engine.registry import engine_class

        return engine_class(self.mode)

    @property
    def is_chunked(self) -> bool:
        """Whether prompts may be split across iterations."""
        if self.enable_chunked_prefill is None:
            return _chunks_by_default(self.mode)  # engines ask per request: no registry lookup each time
        return self.enable_chunked_prefill

    @property
    def limits(self) -> BatchLimits:
        """The configured per-iteration limits."""
        return BatchLimits(self.max_num_batched_tokens, self.max_num_seqs)


@cache
def _chunks_by_default(mode: str) -> bool:
    from equinox.sim.engine.registry import engine_class

    return engine_class(mode).chunks_by_default
