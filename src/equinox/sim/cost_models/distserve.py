"""DistServe's own fitted latency model (OSDI'24), encoded as published for OPT on A100-80GB.

Prefill (ms) = a + b*sum(len) + c*sum(len^2); decode step (ms) = a + b*sum(context) + c*batch_size,
with separate small/large batch coefficients split at a threshold (95). Two deviations, both so
that adding work never shortens an iteration: at and above the threshold we take the upper
envelope of the two decode fits, and negative coefficients are clamped to 0.
"""

from __future__ import annotations

from typing import Any

from equinox.sim.cost_models.fitted import profile_entry
from equinox.sim.hardware import Deployment
from equinox.types import BatchShape

MS = 1e-3


def _coefs(values: list[float]) -> tuple[float, float, float]:
    a, b, c = (max(0.0, float(v)) * MS for v in values)
    return a, b, c


class DistServeCostModel:
    """DistServe prefill/decode formulas; hybrid batches take max(decode, prefill(all tokens) + decode KV)."""

    __slots__ = ("_decode_large", "_decode_small", "_prefill", "_threshold", "deployment", "name")

    def __init__(self, deployment: Deployment, entry: dict[str, Any]) -> None:
        self.name = "distserve"
        self.deployment = deployment
        self._prefill = _coefs(entry["prefill"])
        self._decode_small = _coefs(entry["decoding_smallbs"])
        self._decode_large = _coefs(entry["decoding_largebs"])
        self._threshold = int(entry["decoding_large_small_bs_threshold"])

    def _decode(self, num_seqs: int, context: int) -> float:
        a, b, c = self._decode_small
        t = a + b * context + c * num_seqs
        if num_seqs >= self._threshold:
            a, b, c = self._decode_large
            large = a + b * context + c * num_seqs
            if large > t:
                t = large
        return t

    def iteration_time(self, batch: BatchShape) -> float:
        """Seconds for one iteration of `batch` (0 for an empty batch)."""
        tokens = batch.num_prefill_tokens
        seqs = batch.num_decode_seqs
        if tokens <= 0:
            return self._decode(seqs, batch.decode_context_tokens) if seqs > 0 else 0.0
        # sum(len^2) of whole prompts equals 2 * causal pairs - tokens; chunks reuse the same identity.
        squares = max(2 * batch.prefill_attention_pairs - tokens, 0)
        a, b, c = self._prefill
        prefill = a + b * (tokens + seqs) + c * squares
        if seqs <= 0:
            return prefill
        hybrid = prefill + self._decode_small[1] * batch.decode_context_tokens
        decode = self._decode(seqs, batch.decode_context_tokens)
        return hybrid if hybrid > decode else decode


def build_distserve(deployment: Deployment) -> DistServeCostModel:
    """DistServe's coefficients for its own engine (ConfigError outside OPT-13B/66B on A100-80GB)."""
    return DistServeCostModel(deployment, profile_entry("distserve", deployment))
