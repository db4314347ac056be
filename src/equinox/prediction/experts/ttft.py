"""TTFT expert: time already waited + work queued ahead + the request's own prefill."""

from __future__ import annotations

import math
from collections.abc import Callable

from equinox.types import BatchShape, batch_shape


class TtftExpert:
    """Predicts a request's time to first token from queue state and the iteration model."""

    def __init__(self, iteration_time: Callable[[BatchShape], float]) -> None:
        self._iteration_time = iteration_time

    def prefill_s(self, num_prompt_tokens: int, token_budget: int, num_decode_seqs: int, context_tokens: int) -> float:
        """Seconds to prefill a prompt in chunks of `token_budget` next to the running decodes."""
        budget = max(1, token_budget - num_decode_seqs)
        num_chunks = max(1, math.ceil(num_prompt_tokens / budget))
        chunk = min(num_prompt_tokens, budget)
        step = batch_shape(chunk, 1, chunk * (chunk + 1) // 2, num_decode_seqs, context_tokens)
        return num_chunks * self._iteration_time(step)

    def predict(
        self,
        waited_s: float,
        num_prompt_tokens: int,
        tokens_ahead: int,
        token_budget: int,
        num_decode_seqs: int,
        context_tokens: int,
    ) -> float:
        """Waited + prefill of the `tokens_ahead` queued before it + its own prefill."""
        ahead = 0.0
        if tokens_ahead > 0:
            ahead = self.prefill_s(tokens_ahead, token_budget, num_decode_seqs, context_tokens)
        return waited_s + ahead + self.prefill_s(num_prompt_tokens, token_budget, num_decode_seqs, context_tokens)
