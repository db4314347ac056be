"""A serving runtime's own cost on top of a GPU cost model: per-iteration and per-sequence overhead.

Profiles time the model's forward pass; a runtime adds its own work to every iteration:
the scheduler's loop, inter-process calls, sampling and output handling, which grow
with the number of sequences in the batch (S-LoRA's router walks every request of the
batch in Python after each step). `RuntimeCostModel` adds that to any cost model:

    t = scale * base(batch) + step_s + seq_s * num_seqs        (0 for an empty batch)

`scale` is a runtime-efficiency factor (kernels slower or faster than the profiled ones);
`decode_scale` multiplies decode-only iterations instead (S-LoRA runs prefill and decode in
separate iterations, whose kernels can depart from a profile differently).
benchmarks/engine_fidelity.py fits these values on one half of the VTC artifact's
measured runs and reports them on the other half.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from equinox.errors import ConfigError
from equinox.sim.cost_model import CostModel
from equinox.types import BatchShape


class RuntimeCostModel:
    """`base` with every iteration scaled and the runtime's per-step and per-sequence overhead added."""

    def __init__(
        self, base: CostModel, *, scale: float = 1.0, step_s: float = 0.0, seq_s: float = 0.0,
        decode_scale: float | None = None,
    ) -> None:
        decode_scale = scale if decode_scale is None else decode_scale
        for label, value in (("runtime scale", scale), ("decode scale", decode_scale)):
            if not (value > 0 and math.isfinite(value)):
                raise ConfigError(f"{label} must be a finite number > 0, got {value!r}")
        for label, value in (("step overhead", step_s), ("per-sequence overhead", seq_s)):
            if not (value >= 0 and math.isfinite(value)):
                raise ConfigError(f"{label} must be a finite number >= 0 s, got {value!r}")
        self.base = base
        self.scale = scale
        self.decode_scale = decode_scale
        self.step_s = step_s
        self.seq_s = seq_s
        parts = [base.name]
        if scale != 1.0:
            parts.append(f"x{scale:.4g}")
        if decode_scale != scale:
            parts.append(f"(decode x{decode_scale:.4g})")
        if step_s or seq_s:
            parts.append(f"+{step_s * 1e3:.3g}ms/step+{seq_s * 1e3:.3g}ms/seq")
        self.name = "".join(parts)
        fast = getattr(base, "decode_time", None)
        if fast is not None:
            self.decode_time: Callable[[int, int], float] = self._wrap_decode(fast)

    def iteration_time(self, batch: BatchShape) -> float:
        """Seconds for one iteration of `batch`, the runtime's overhead included."""
        t = self.base.iteration_time(batch)
        if t <= 0.0:
            return t
        scale = self.scale if batch.num_prefill_tokens else self.decode_scale
        return scale * t + self.step_s + self.seq_s * (batch.num_prefill_seqs + batch.num_decode_seqs)

    def _wrap_decode(self, fast: Callable[[int, int], float]) -> Callable[[int, int], float]:
        scale, step_s, seq_s = self.decode_scale, self.step_s, self.seq_s

        def decode_time(num_seqs: int, context_tokens: int) -> float:
            return scale * fast(num_seqs, context_tokens) + step_s + seq_s * num_seqs

        return decode_time


def with_runtime(
    base: CostModel, *, scale: float = 1.0, step_s: float = 0.0, seq_s: float = 0.0,
    decode_scale: float | None = None,
) -> CostModel:
    """`base` itself when nothing is added (bit-identical results), else a RuntimeCostModel."""
    if scale == 1.0 and step_s == 0.0 and seq_s == 0.0 and decode_scale in (None, scale):
        return base
    return RuntimeCostModel(base, scale=scale, step_s=step_s, seq_s=seq_s, decode_scale=decode_scale)
