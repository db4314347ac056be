"""GPU and model specifications, deployments (GPU x model x tensor parallel) and KV capacity."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from equinox.compiled import picklable_when_compiled
from equinox.errors import ConfigError
from equinox.registry import Registry
from equinox.scheduling.interface import Platform
from equinox.types import BatchShape, StepReport

if TYPE_CHECKING:
    from equinox.sim.cost_model import CostModel

GIB = 1024**3


@dataclass(frozen=True, slots=True)
class GpuSpec:
    """Datasheet figures of one accelerator (dense bf16/fp16 tensor-core peak)."""

    name: str
    peak_flops: float  # FLOP/s, dense bf16
    hbm_bandwidth: float  # bytes/s
    memory_bytes: float
    interconnect_bandwidth: float = 0.0  # bytes/s per GPU for all-reduce (NVLink); 0 = none


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """Transformer shape of a decoder-only model (Llama-style unless `is_gated_mlp` is False)."""

    name: str
    num_layers: int
    hidden_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    is_gated_mlp: bool = True
    dtype_bytes: int = 2

    @property
    def num_params(self) -> int:
        """Parameters: attention and MLP weights of every layer plus the (untied) embeddings."""
        h = self.hidden_size
        attn = h * self.head_dim * (self.num_heads + 2 * self.num_kv_heads) + self.num_heads * self.head_dim * h
        mlp = (3 if self.is_gated_mlp else 2) * h * self.intermediate_size
        return self.num_layers * (attn + mlp) + 2 * self.vocab_size * h

    @property
    def num_matmul_params(self) -> int:
        """Parameters touched by every token's matmuls (layers plus the LM head)."""
        return self.num_params - self.vocab_size * self.hidden_size

    @property
    def kv_bytes_per_token(self) -> int:
        """KV-cache bytes one token occupies across all layers."""
        return 2 * self.num_layers * self.num_kv_heads * self.head_dim * self.dtype_bytes

    @property
    def weight_bytes(self) -> int:
        """Bytes of weights."""
        return self.num_params * self.dtype_bytes


GPUS: Registry[GpuSpec] = Registry("GPU")
MODELS: Registry[ModelSpec] = Registry("model")

for _gpu in (
    # Datasheet dense bf16 peaks; A10G as AWS publishes it.
    GpuSpec("a10g", 70e12, 600e9, 24 * GIB),
    GpuSpec("l4", 121e12, 300e9, 24 * GIB),
    GpuSpec("a40", 149.7e12, 696e9, 48 * GIB, 56e9),
    GpuSpec("a100-40gb", 312e12, 1555e9, 40 * GIB, 300e9),
    GpuSpec("a100-80gb", 312e12, 2039e9, 80 * GIB, 300e9),
    GpuSpec("h100-80gb", 989e12, 3350e9, 80 * GIB, 450e9),
    GpuSpec("h200", 989e12, 4800e9, 141 * GIB, 450e9),
):
    GPUS.register(_gpu.name, _gpu)

for _model in (
    ModelSpec("llama-2-7b", 32, 4096, 32, 32, 128, 11008, 32000),
    ModelSpec("llama-2-13b", 40, 5120, 40, 40, 128, 13824, 32000),
    ModelSpec("llama-3-8b", 32, 4096, 32, 8, 128, 14336, 128256),
    ModelSpec("llama-2-70b", 80, 8192, 64, 8, 128, 28672, 32000),
    ModelSpec("llama-3-70b", 80, 8192, 64, 8, 128, 28672, 128256),
    ModelSpec("opt-13b", 40, 5120, 40, 40, 128, 20480, 50272, is_gated_mlp=False),
    ModelSpec("opt-66b", 64, 9216, 72, 72, 128, 36864, 50272, is_gated_mlp=False),
    # LLaMA-1 7B (the VTC artifact's A10G profile) has Llama-2-7B's shape.
    ModelSpec("llama-7b", 32, 4096, 32, 32, 128, 11008, 32000),
):
    MODELS.register(_model.name, _model)


@dataclass(frozen=True, slots=True)
class Deployment:
    """One model served on `tensor_parallel` GPUs of one type."""

    gpu: GpuSpec
    model: ModelSpec
    tensor_parallel: int = 1
    gpu_memory_utilization: float = 0.9
    activation_reserve_bytes: float = 1.0 * GIB  # per GPU: activations, CUDA graphs, fragmentation

    def __post_init__(self) -> None:
        if self.tensor_parallel < 1:
            raise ConfigError(f"tensor_parallel must be >= 1, got {self.tensor_parallel}")
        heads = self.model.num_heads
        if heads % self.tensor_parallel:  # vLLM shards attention heads evenly over the GPUs
            raise ConfigError(f"tensor_parallel={self.tensor_parallel} does not divide {self.model.name}'s {heads} "
                              f"attention heads; use one of {[d for d in range(1, heads + 1) if heads % d == 0]}")
        if not 0.0 < self.gpu_memory_utilization <= 1.0:
            raise ConfigError(
                f"gpu_memory_utilization must be in (0, 1], got {self.gpu_memory_utilization}"
            )

    @property
    def name(self) -> str:
        """Short label, e.g. `llama-2-70b@a100-80gbx4`."""
        tp = f"x{self.tensor_parallel}" if self.tensor_parallel > 1 else ""
        return f"{self.model.name}@{self.gpu.name}{tp}"

    @property
    def peak_flops(self) -> float:
        """Aggregate dense peak of all GPUs of the deployment."""
        return self.gpu.peak_flops * self.tensor_parallel

    @property
    def kv_capacity_tokens(self) -> int:
        """KV-cache capacity in tokens left after weights and the activation reserve."""
        usable = self.tensor_parallel * (
            self.gpu.memory_bytes * self.gpu_memory_utilization - self.activation_reserve_bytes
        )
        free = usable - self.model.weight_bytes
        if free <= 0:
            raise ConfigError(
                f"{self.model.name} weights ({self.model.weight_bytes / GIB:.1f} GiB) do not fit on "
                f"{self.tensor_parallel} x {self.gpu.name} ({self.gpu.memory_bytes / GIB:.0f} GiB each); "
                "raise --tensor-parallel or pick a larger GPU"
            )
        return int(free // self.model.kv_bytes_per_token)

    def num_kv_blocks(self, block_size: int) -> int:
        """KV capacity in blocks of `block_size` tokens."""
        return self.kv_capacity_tokens // block_size

    def flops(self, batch: BatchShape) -> float:
        """Model FLOPs of one iteration: dense matmuls plus attention score/value products."""
        per_token, per_pair = _flop_constants(self.model)
        return per_token * batch.num_tokens + per_pair * (batch.prefill_attention_pairs + batch.decode_context_tokens)

    def platform(self, cost_model: CostModel | None = None) -> Platform:
        """The Platform policies schedule on: this deployment's cost constants, its FLOPs model
        and, when given, `cost_model`'s iteration time (the simulator's)."""
        return Platform.from_model(
            self.name, num_matmul_params=self.model.num_matmul_params,
            kv_bytes_per_token=self.model.kv_bytes_per_token, weight_bytes=self.model.weight_bytes,
            peak_flops=self.peak_flops, hbm_bandwidth=self.gpu.hbm_bandwidth * self.tensor_parallel,
            source="datasheet" if cost_model is None else f"datasheet + cost model {cost_model.name}",
            iteration_time=None if cost_model is None else cost_model.iteration_time, flops=self.flops,
        )


class StepFlops:
    """`deployment.flops(report.batch)` of a step report, with the model's constants taken once (a collector's
    per-step FLOPs)."""

    def __init__(self, deployment: Deployment) -> None:
        self._per_token, self._per_pair = _flop_constants(deployment.model)

    def __call__(self, report: StepReport) -> float:
        b = report.batch
        return (self._per_token * (b.num_prefill_tokens + b.num_decode_seqs)
                + self._per_pair * (b.prefill_attention_pairs + b.decode_context_tokens))


@functools.lru_cache(maxsize=64)
def _flop_constants(model: ModelSpec) -> tuple[float, float]:
    """FLOPs per token through the matmuls and per attended (query, key) pair (cached: per-step path)."""
    return 2.0 * model.num_matmul_params, 4.0 * model.num_layers * model.num_heads * model.head_dim


def make_deployment(
    gpu: str, model: str, tensor_parallel: int = 1, gpu_memory_utilization: float = 0.9
) -> Deployment:
    """Look up a GPU and a model by name and check the weights fit."""
    dep = Deployment(GPUS.get(gpu), MODELS.get(model), tensor_parallel, gpu_memory_utilization)
    dep.kv_capacity_tokens  # noqa: B018 - raises a clear error when weights do not fit
    return dep


def blocks_for(num_tokens: int, block_size: int) -> int:
    """Blocks needed to hold `num_tokens` tokens."""
    return math.ceil(num_tokens / block_size)


picklable_when_compiled(GpuSpec, ModelSpec, Deployment)  # frozen: see equinox.compiled
