"""Roofline cost model from model shape and GPU datasheet, efficiency constants calibrated on measured data."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from equinox.compiled import picklable_when_compiled
from equinox.errors import ConfigError
from equinox.sim.cost_models.store import load_profile
from equinox.sim.hardware import Deployment
from equinox.types import BatchShape


@dataclass(frozen=True, slots=True)
class RooflineParams:
    """Achievable fractions of datasheet peaks and fixed costs (see profiles/roofline.json for the fit)."""

    matmul_efficiency: float = 0.65  # achievable fraction of dense peak for weight matmuls (MFU ceiling)
    attention_efficiency: float = 0.5  # fraction of peak for prefill attention (flash-attention class)
    bandwidth_efficiency: float = 0.8  # fraction of HBM bandwidth reached streaming weights / KV
    overhead_s: float = 0.004  # per-iteration scheduling, sampling and launch cost
    layer_overhead_s: float = 20e-6  # per-layer kernel launches and elementwise ops
    allreduce_latency_s: float = 15e-6  # per all-reduce launch/synchronisation latency
    interconnect_efficiency: float = 0.7  # fraction of the datasheet link bandwidth all-reduce reaches
    pcie_bandwidth: float = 12e9  # bytes/s per GPU for all-reduce when the GPU has no NVLink

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not value >= 0:
                raise ConfigError(f"roofline parameter {f.name} must be >= 0, got {value}")
        for name in ("matmul_efficiency", "attention_efficiency", "bandwidth_efficiency", "interconnect_efficiency"):
            if not 0 < getattr(self, name) <= 1:
                raise ConfigError(f"roofline parameter {name} must be in (0, 1], got {getattr(self, name)}")

    @classmethod
    def from_mapping(cls, data: dict[str, Any]) -> RooflineParams:
        """Parameters from a mapping (unknown keys are a ConfigError)."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown roofline parameter(s) {sorted(unknown)}; known: {sorted(known)}")
        return cls(**{k: float(v) for k, v in data.items()})


def calibrated_params() -> RooflineParams:
    """The parameters fitted by tools/fit_cost_models.py (shipped in profiles/roofline.json)."""
    return RooflineParams.from_mapping(load_profile("roofline")["deployments"]["*"])


class RooflineCostModel:
    """max(compute, memory) for weight matmuls + attention FLOPs/KV reads + TP all-reduce + fixed overhead."""
    # Time never falls when a count of the batch grows (max of non-decreasing terms plus terms with
    # coefficients >= 0): MoPE's iteration expert relies on it to skip predictions.
    is_monotone = True

    __slots__ = (
        "_comm_per_token",
        "_compute_per_seq",
        "_compute_per_token",
        "_ctx_s",
        "_fixed_s",
        "_layer_memory_s",
        "_layer_per_token",
        "_memory_s",
        "_pair_s",
        "deployment",
        "name",
        "params",
    )

    def __init__(self, deployment: Deployment, params: RooflineParams | None = None) -> None:
        self.name = "roofline"
        self.deployment = deployment
        self.params = p = params if params is not None else calibrated_params()
        gpu, m, tp = deployment.gpu, deployment.model, deployment.tensor_parallel
        flops_rate = tp * gpu.peak_flops * p.matmul_efficiency
        bytes_rate = tp * gpu.hbm_bandwidth * p.bandwidth_efficiency
        head_params = m.vocab_size * m.hidden_size
        layer_params = m.num_matmul_params - head_params
        # Every token goes through the layers; only sampled positions (one per sequence) through the head.
        self._layer_per_token = 2.0 * layer_params / flops_rate
        self._compute_per_token = self._layer_per_token
        self._compute_per_seq = 2.0 * head_params / flops_rate
        self._layer_memory_s = layer_params * m.dtype_bytes / bytes_rate
        self._memory_s = m.num_matmul_params * m.dtype_bytes / bytes_rate
        self._pair_s = 4.0 * m.num_layers * m.num_heads * m.head_dim / (tp * gpu.peak_flops * p.attention_efficiency)
        self._ctx_s = m.kv_bytes_per_token / bytes_rate
        num_allreduce = 2 * m.num_layers if tp > 1 else 0
        link = gpu.interconnect_bandwidth * p.interconnect_efficiency or p.pcie_bandwidth
        # Ring all-reduce moves 2 (tp-1)/tp of the activation bytes over each GPU's link.
        self._comm_per_token = (
            num_allreduce * 2.0 * (tp - 1) / tp * m.hidden_size * m.dtype_bytes / link if tp > 1 else 0.0
        )
        self._fixed_s = p.overhead_s + m.num_layers * p.layer_overhead_s + num_allreduce * p.allreduce_latency_s

    def iteration_time(self, batch: BatchShape) -> float:
        """Seconds for one iteration of `batch` (0 for an empty batch)."""
        n = batch.num_prefill_tokens + batch.num_decode_seqs
        if n <= 0:
            return 0.0
        return (
            self._head(n, batch.num_prefill_seqs + batch.num_decode_seqs, batch.prefill_attention_pairs)
            + self._ctx_s * batch.decode_context_tokens
            + self._comm_per_token * n
        )

    def _head(self, n: int, num_seqs: int, prefill_attention_pairs: int) -> float:
        """The terms before the decode context's, summed in `iteration_time`'s order (`context_terms`' head)."""
        compute = self._compute_per_token * n + self._compute_per_seq * num_seqs
        linear = compute if compute > self._memory_s else self._memory_s
        return self._fixed_s + linear + self._pair_s * prefill_attention_pairs

    def context_terms(self, num_prefill_tokens: int, num_prefill_seqs: int, prefill_attention_pairs: int,
                      num_decode_seqs: int) -> tuple[float, float, float]:
        """(head, per_context_token, tail): `iteration_time` of a batch of these counts attending `c`
        decode-context tokens is `head + per_context_token * c + tail`, bit for bit, for every c."""
        n = num_prefill_tokens + num_decode_seqs
        if n <= 0:
            return 0.0, 0.0, 0.0
        return (self._head(n, num_prefill_seqs + num_decode_seqs, prefill_attention_pairs), self._ctx_s,
                self._comm_per_token * n)

    def linear_time_s(self, num_tokens: int, *, include_comm: bool = True) -> float:
        """Time of the layers' linear ops (and TP all-reduces) alone: no LM head, attention or overhead."""
        if num_tokens <= 0:
            return 0.0
        compute = self._layer_per_token * num_tokens
        linear = compute if compute > self._layer_memory_s else self._layer_memory_s
        t = linear + self.deployment.model.num_layers * self.params.layer_overhead_s
        return t + self.comm_time_s(num_tokens) if include_comm else t

    def comm_time_s(self, num_tokens: int) -> float:
        """Time of one iteration's tensor-parallel all-reduces (0 without TP)."""
        if self.deployment.tensor_parallel <= 1 or num_tokens <= 0:
            return 0.0
        num_allreduce = 2 * self.deployment.model.num_layers
        return num_allreduce * self.params.allreduce_latency_s + self._comm_per_token * num_tokens

    def attention_coefficients(self) -> tuple[float, float]:
        """(seconds per prefill attention pair, seconds per decode context token)."""
        return self._pair_s, self._ctx_s


def build_roofline(deployment: Deployment) -> RooflineCostModel:
    """Roofline model with the calibrated parameters; works for every GPU x model."""
    return RooflineCostModel(deployment)


picklable_when_compiled(RooflineParams)  # frozen: see equinox.compiled
