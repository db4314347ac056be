"""Iteration-time expert: a base model corrected online by observed/predicted ratio per regime.

The base is the platform's cost model when one is bound (the simulator, or a GPU with
a profile); otherwise a linear model fitted online by decayed, ridge-regularised least
squares on the engine's own measured iterations (vLLM, the gateway). Either way an
exponential moving average of observed/predicted per regime corrects systematic
error, as DESIGN.md describes. A regime is the iteration's phase (prefill-heavy or
decode-heavy) and its size (tokens, in powers of two), because a cost model's error
depends on batch size: overheads dominate small batches, bandwidth or compute large ones.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from equinox.types import BatchShape, batch_is_empty

Features = tuple[float, float, float, float]
RECENT_CHANGES: Final = 8  # ratio changes remembered by regime (`IterationTimeExpert.unchanged_since`)


def features(batch: BatchShape) -> Features:
    """Regressors of order one: intercept, prefill tokens / 1k, decode sequences / 100, attended context / 100k."""
    return (1.0, batch.num_prefill_tokens / 1e3, batch.num_decode_seqs / 1e2,
            (batch.decode_context_tokens + batch.prefill_attention_pairs / 256.0) / 1e5)


def _solve(a: list[list[float]], b: list[float]) -> list[float] | None:
    """Gaussian elimination with partial pivoting; None when singular."""
    n = len(b)
    m = [[*row, b[i]] for i, row in enumerate(a)]
    for col in range(n):
        pivot = max(range(col, n), key=lambda r: abs(m[r][col]))
        if abs(m[pivot][col]) < 1e-18:
            return None
        m[col], m[pivot] = m[pivot], m[col]
        for r in range(col + 1, n):
            f = m[r][col] / m[col][col]
            for c in range(col, n + 1):
                m[r][c] -= f * m[col][c]
    x = [0.0] * n
    for r in range(n - 1, -1, -1):
        x[r] = (m[r][n] - sum(m[r][c] * x[c] for c in range(r + 1, n))) / m[r][r]
    return x


def _regime(num_prefill_tokens: int, num_decode_seqs: int) -> int:
    """The regime as one int (a dict key without a tuple to build and hash: looked up several times a step):
    the size bucket times two, plus one when prefill-heavy."""
    return ((num_prefill_tokens + num_decode_seqs).bit_length() << 1) | (num_prefill_tokens > num_decode_seqs)


def regime_name(regime: int) -> tuple[str, int]:
    """(`prefill` or `decode`, size bucket) of a regime key."""
    return ("prefill" if regime & 1 else "decode"), regime >> 1


def regime_key(phase: str, size: int) -> int:
    """The regime key of (`prefill` or `decode`, size bucket)."""
    return (size << 1) | (phase == "prefill")


class OnlineLinearModel:
    """Least squares over `features(batch)` with exponential forgetting and a ridge towards a prior.

    Keeps the decayed normal equations (X^T X, X^T y) and re-solves lazily, which stays
    stable where recursive least squares with forgetting winds up its covariance (very
    large or rarely varying features). Coefficients are kept non-negative: more work
    never makes an iteration faster. Deterministic.
    """

    def __init__(self, forgetting: float = 0.999, ridge: float = 1e-3,
                 prior: Features = (5e-3, 0.1, 0.05, 0.01)) -> None:
        self.forgetting = forgetting
        self.ridge = ridge
        self.prior = list(prior)
        n = len(prior)
        self._xtx = [[0.0] * n for _ in range(n)]
        self._xty = [0.0] * n
        self.theta = list(prior)
        self._dirty = False
        self.num_observations = 0

    def predict(self, batch: BatchShape) -> float:
        """Predicted seconds (floored at a microsecond)."""
        if self._dirty:
            self._refit()
        x = features(batch)
        return max(1e-6, sum(t * v for t, v in zip(self.theta, x, strict=True)))

    def observe(self, batch: BatchShape, duration_s: float) -> None:
        """Fold one measured iteration into the decayed normal equations."""
        x = features(batch)
        lam = self.forgetting
        n = len(x)
        for i in range(n):
            row = self._xtx[i]
            for j in range(n):
                row[j] = lam * row[j] + x[i] * x[j]
            self._xty[i] = lam * self._xty[i] + x[i] * duration_s
        self._dirty = True
        self.num_observations += 1

    def export_state(self) -> dict[str, Any]:
        """The decayed normal equations, the current solution and the evidence count, JSON-safe."""
        return {
            "xtx": [list(row) for row in self._xtx], "xty": list(self._xty), "theta": list(self.theta),
            "is_dirty": self._dirty, "num_observations": self.num_observations,
        }

    def restore_state(
        self, xtx: list[list[float]], xty: list[float], theta: list[float], is_dirty: bool, num_observations: int
    ) -> None:
        """Resume from `export_state()`; shapes must match the feature count."""
        n = len(self.prior)
        if len(xtx) != n or any(len(row) != n for row in xtx) or len(xty) != n or len(theta) != n:
            raise ValueError(f"online iteration model: expected {n} features")
        self._xtx = [list(row) for row in xtx]
        self._xty = list(xty)
        self.theta = list(theta)
        self._dirty = is_dirty
        self.num_observations = num_observations

    def _refit(self) -> None:
        n = len(self.prior)
        a = [[self._xtx[i][j] + (self.ridge if i == j else 0.0) for j in range(n)] for i in range(n)]
        b = [self._xty[i] + self.ridge * self.prior[i] for i in range(n)]
        active = list(range(n))
        theta = [0.0] * n
        while active:  # drop negative coefficients and re-solve (tiny active-set NNLS)
            sol = _solve([[a[i][j] for j in active] for i in active], [b[i] for i in active])
            if sol is None:
                break
            if all(v >= 0 for v in sol):
                for k, i in enumerate(active):
                    theta[i] = sol[k]
                break
            active = [i for k, i in enumerate(active) if sol[k] > 0]
        self.theta = theta
        self._dirty = False


class IterationTimeExpert:
    """Predicts how long the next iteration takes; learns from every executed one."""

    def __init__(self, base: Callable[[BatchShape], float] | None = None, ema: float = 0.05) -> None:
        self._base = base
        self._online = OnlineLinearModel() if base is None else None
        self._ema = ema
        self.ratio: dict[int, float] = {}  # regime key (`regime_key`) -> observed/predicted
        # The same ratios as a list indexed by regime key (1.0 where none was learned): read for every
        # point of adaptive batching's search, where a dict lookup boxes its int key and its default.
        self.ratio_at: list[float] = []
        self.ratio_version = 0  # counts changes to any ratio (callers that cached ratios check it)
        # The regime each of the latest RECENT_CHANGES versions changed, at `version % RECENT_CHANGES`
        # (-1: every ratio may have: a restore), so that a caller can tell cheaply that none it reads moved.
        self._changed: list[int] = [-1] * RECENT_CHANGES
        self.num_observations = 0
        # A base that never predicts less when a batch count grows lets callers skip predictions
        # a comparison already implies (adaptive batching); cost models declare it (`is_monotone`).
        model = getattr(base, "__self__", None)
        self.is_monotone = bool(getattr(model, "is_monotone", False))
        # The base's terms affine in the decode context, where the base is a cost model's own
        # `iteration_time` and the model offers them (`ContextTerms`): `predict` of a batch is then
        # (head + per_context_token * context + tail) * the ratio of its regime, bit for bit.
        terms = getattr(model, "context_terms", None)
        self.context_terms: Callable[[int, int, int, int], tuple[float, float, float]] | None = (
            terms if terms is not None and base == getattr(model, "iteration_time", None) else None)

    @staticmethod
    def regime(batch: BatchShape) -> int:
        """Which correction applies to this batch: a key of (`prefill` or `decode`, size bucket) (`regime_name`)."""
        return _regime(batch.num_prefill_tokens, batch.num_decode_seqs)

    @staticmethod
    def regime_of(num_prefill_tokens: int, num_decode_seqs: int) -> int:
        """`regime` of a batch with these counts (`predict` applies `ratio.get(regime, 1.0)`)."""
        return _regime(num_prefill_tokens, num_decode_seqs)

    def base(self, batch: BatchShape) -> float:
        """The uncorrected prediction."""
        if self._base is not None:
            return self._base(batch)
        assert self._online is not None
        return self._online.predict(batch)

    def predict(self, batch: BatchShape) -> float:
        """Corrected prediction in seconds (`base` and `regime` inlined: adaptive batching calls it per step)."""
        base = self._base
        predicted = base(batch) if base is not None else self.base(batch)
        key = _regime(batch.num_prefill_tokens, batch.num_decode_seqs)
        ratio_at = self.ratio_at
        return predicted * (ratio_at[key] if key < len(ratio_at) else 1.0)

    @property
    def online(self) -> OnlineLinearModel | None:
        """The online model standing in for a missing cost model (None when one is bound)."""
        return self._online

    def export_state(self) -> dict[str, Any]:
        """Per-regime correction ratios and the evidence count (the online model is exported apart)."""
        return {
            "ratios": [[*regime_name(key), r] for key, r in self.ratio.items()],
            "num_observations": self.num_observations,
        }

    def restore_state(self, ratios: dict[tuple[str, int], float], num_observations: int) -> None:
        """Resume the correction ratios of `export_state()` ((phase, size bucket) -> ratio)."""
        self.ratio = {regime_key(phase, size): r for (phase, size), r in ratios.items()}
        self.ratio_at = []
        self.ratio_version += 1
        self._changed[self.ratio_version % RECENT_CHANGES] = -1
        for key, r in self.ratio.items():
            self._set_ratio_at(key, r)
        self.num_observations = num_observations

    def unchanged_since(self, version: int, regime_mask: int) -> bool:
        """True if no ratio of the regimes in `regime_mask` (bit k: regime key k) changed after
        `ratio_version` was `version` (False where that is not known: more than RECENT_CHANGES changes
        ago, or across a restore)."""
        latest = self.ratio_version
        if latest - version > RECENT_CHANGES:
            return False
        changed = self._changed
        for v in range(version + 1, latest + 1):
            key = changed[v % RECENT_CHANGES]
            if key < 0 or (regime_mask >> key) & 1:
                return False
        return True

    def _set_ratio_at(self, key: int, r: float) -> None:
        self.ratio_version += 1
        self._changed[self.ratio_version % RECENT_CHANGES] = key
        ratio_at = self.ratio_at
        if key >= len(ratio_at):
            ratio_at.extend([1.0] * (key + 1 - len(ratio_at)))
        ratio_at[key] = r

    def observe(self, batch: BatchShape, duration_s: float) -> None:
        """Fold in one measured iteration."""
        if batch_is_empty(batch) or duration_s <= 0:
            return
        self.num_observations += 1
        base = self._base
        predicted = base(batch) if base is not None else self.base(batch)
        if self._online is not None:
            self._online.observe(batch, duration_s)
        if predicted > 0:
            key = _regime(batch.num_prefill_tokens, batch.num_decode_seqs)
            r = self.ratio.get(key, 1.0)
            new = r + self._ema * (duration_s / predicted - r)
            if new != r or key not in self.ratio:
                self.ratio[key] = new
                self._set_ratio_at(key, new)
