"""Iteration-time expert: a base model corrected online by observed/predicted ratio per regime.

The base is the platform's cost model when one is bound (the simulator, or a GPU with
a profile); otherwise a linear model fitted online by recursive least squares on the
engine's own measured iterations (vLLM, the gateway). Either way an exponential
moving average of observed/predicted per regime (prefill-heavy, decode-heavy)
corrects systematic error, as DESIGN.md describes.
"""

from __future__ import annotations

from collections.abc import Callable

from equinox.types import BatchShape

Features = tuple[float, float, float, float]


def features(batch: BatchShape) -> Features:
    """Regressors of order one: intercept, prefill tokens / 1k, decode sequences / 100, attended context / 100k."""
    return (1.0, batch.num_prefill_tokens / 1e3, batch.num_decode_seqs / 1e2,
            (batch.decode_context_tokens + batch.prefill_attention_pairs / 256.0) / 1e5)


class OnlineLinearModel:
    """Recursive least squares with forgetting over `features(batch)`; deterministic."""

    def __init__(self, forgetting: float = 0.999, prior: Features = (5e-3, 0.1, 0.05, 0.01)) -> None:
        self.forgetting = forgetting
        self.theta = list(prior)
        n = len(prior)
        self._p = [[(1e2 if i == j else 0.0) for j in range(n)] for i in range(n)]
        self.num_observations = 0

    def predict(self, batch: BatchShape) -> float:
        """Predicted seconds (floored at a microsecond)."""
        x = features(batch)
        return max(1e-6, sum(t * v for t, v in zip(self.theta, x, strict=True)))

    def observe(self, batch: BatchShape, duration_s: float) -> None:
        """One RLS update."""
        x = features(batch)
        p = self._p
        n = len(x)
        px = [sum(p[i][j] * x[j] for j in range(n)) for i in range(n)]
        denom = self.forgetting + sum(x[i] * px[i] for i in range(n))
        gain = [v / denom for v in px]
        err = duration_s - sum(t * v for t, v in zip(self.theta, x, strict=True))
        self.theta = [t + g * err for t, g in zip(self.theta, gain, strict=True)]
        lam = self.forgetting
        self._p = [[(p[i][j] - gain[i] * px[j]) / lam for j in range(n)] for i in range(n)]
        self.num_observations += 1


class IterationTimeExpert:
    """Predicts how long the next iteration takes; learns from every executed one."""

    def __init__(self, base: Callable[[BatchShape], float] | None = None, ema: float = 0.05) -> None:
        self._base = base
        self._online = OnlineLinearModel() if base is None else None
        self._ema = ema
        self.ratio = {"prefill": 1.0, "decode": 1.0}
        self.num_observations = 0

    @staticmethod
    def regime(batch: BatchShape) -> str:
        """`prefill` when prefill tokens dominate the iteration's tokens, else `decode`."""
        return "prefill" if batch.num_prefill_tokens > batch.num_decode_seqs else "decode"

    def base(self, batch: BatchShape) -> float:
        """The uncorrected prediction."""
        if self._base is not None:
            return self._base(batch)
        assert self._online is not None
        return self._online.predict(batch)

    def predict(self, batch: BatchShape) -> float:
        """Corrected prediction in seconds."""
        return self.base(batch) * self.ratio[self.regime(batch)]

    def observe(self, batch: BatchShape, duration_s: float) -> None:
        """Fold in one measured iteration."""
        if batch.is_empty or duration_s <= 0:
            return
        self.num_observations += 1
        predicted = self.base(batch)
        if self._online is not None:
            self._online.observe(batch, duration_s)
        if predicted > 0:
            r = self.regime(batch)
            self.ratio[r] += self._ema * (duration_s / predicted - self.ratio[r])
