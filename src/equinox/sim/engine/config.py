"""Mechanism settings of one simulated engine replica (shared by every engine model)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from equinox.errors import ConfigError
from equinox.types import BatchLimits

if TYPE_CHECKING:
    from equinox.sim.engine.base import Engine


@dataclass(frozen=True)
class EngineConfig:
    """Mechanism settings of one engine replica; `mode` names the engine model (registry.py)."""

    mode: str = "vllm"
    max_num_batched_tokens: int = 2048
    max_num_seqs: int = 256
    block_size: int = 16
    num_kv_blocks: int = 8192
    enable_chunked_prefill: bool | None = None  # None: the engine's default (on for vllm, never for slora)
    admission_interval_steps: int = 10  # slora: decode steps between admissions

    def __post_init__(self) -> None:
        for name in ("max_num_batched_tokens", "max_num_seqs", "block_size", "num_kv_blocks"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.admission_interval_steps < 1:
            raise ConfigError(f"admission_interval_steps must be >= 1, got {self.admission_interval_steps}")
        self.engine_class.check_config(self)  # unknown engine names and engine-specific rules

    @property
    def engine_class(self) -> type[Engine]:
        """The engine model registered under `mode`."""
        from equinox.sim.engine.registry import engine_class

        return engine_class(self.mode)

    @property
    def is_chunked(self) -> bool:
        """Whether prompts may be split across iterations."""
        if self.enable_chunked_prefill is None:
            return self.engine_class.chunks_by_default
        return self.enable_chunked_prefill

    @property
    def limits(self) -> BatchLimits:
        """The configured per-iteration limits."""
        return BatchLimits(self.max_num_batched_tokens, self.max_num_seqs)
