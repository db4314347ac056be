"""Cost models: iteration time from batch shape, behind one call."""

from __future__ import annotations

from typing import Protocol

from equinox.registry import Registry
from equinox.sim.hardware import Deployment
from equinox.types import BatchShape


class CostModel(Protocol):
    """Predicts how long one engine iteration takes."""

    name: str

    def iteration_time(self, batch: BatchShape) -> float:
        """Seconds one iteration of `batch` takes on the deployment this model was built for."""
        ...


class ContextTerms(Protocol):
    """A cost model whose iteration time is affine in the decode context, term order included (optional).

    `context_terms(p, s, a, d)` returns (head, per_context_token, tail) such that `iteration_time`
    of the batch (p prefill tokens in s sequences with a attention pairs, d decodes attending c
    tokens) is `head + per_context_token * c + tail` bit for bit, for every c. MoPE's iteration
    expert uses it where the model's own `iteration_time` is its base (adaptive batching predicts
    the same batches at each step's context).
    """

    def context_terms(self, num_prefill_tokens: int, num_prefill_seqs: int, prefill_attention_pairs: int,
                      num_decode_seqs: int) -> tuple[float, float, float]: ...


class CostModelFactory(Protocol):
    """Builds a cost model for a deployment (raises ConfigError if it has no data for it)."""

    def __call__(self, deployment: Deployment) -> CostModel: ...


COST_MODELS: Registry[CostModelFactory] = Registry("cost model")
