"""Output-length expert: per-tenant history, prompt-length bucket, global history, prior.

The gate picks the most specific source with enough evidence (tenant, then the
prompt-length bucket, then all traffic, then a fixed prior), and the answer is capped
by the request's max_tokens. Deterministic: bounded ring buffers, no sampling.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from equinox.compiled import picklable_when_compiled
from equinox.prediction.interface import LengthPrediction, RecentStats

History = tuple[list[float], int]  # retained observations (oldest first), evidence count

# One float object per output length below 4,096, made together at import (so they lie close in memory):
# the windows of recent lengths hold these. A window's sorted copy is searched at every observation, and
# each probe reads a float object: floats made one by one as requests finish end up scattered over the
# heap, and at a million requests those reads missed the cache (perf: most of `RecentStats.add`'s time).
_LENGTHS: Final = [float(n) for n in range(4096)]


@dataclass(frozen=True)
class OutputLengthConfig:
    """Gate thresholds, history sizes, the prior and the conservative quantile."""

    quantile: float = 0.9
    history: int = 128
    min_tenant_evidence: int = 4
    min_bucket_evidence: int = 8
    min_global_evidence: int = 8
    prior_mean: float = 256.0
    prior_quantile: float = 512.0


class OutputLengthExpert:
    """Predicts how many tokens a request will generate before it runs."""

    def __init__(self, config: OutputLengthConfig | None = None) -> None:
        self.config = config or OutputLengthConfig()
        self._tenant: dict[str, RecentStats] = {}
        self._bucket: dict[int, RecentStats] = {}
        self._global = self._new()
        # Answers since the latest observation: a request is predicted at arrival, admission and
        # in KV admission checks, and nothing changes an answer but an observation.
        self._answers: dict[tuple[str, int, int | None], LengthPrediction] = {}
        # Per tenant whose gate picks its own history (for good: evidence only grows), that history's answer
        # before the max_tokens cap: it depends on nothing else, so only the tenant's own observations
        # change it (`_answers` is emptied by every tenant's).
        self._own: dict[str, LengthPrediction] = {}

    def _new(self) -> RecentStats:
        return RecentStats(self.config.history, self.config.quantile)

    @staticmethod
    def bucket_of(num_prompt_tokens: int) -> int:
        """Prompt-length bucket: powers of two (1, 2-3, 4-7, ...)."""
        return max(1, num_prompt_tokens).bit_length()

    def predict(self, tenant: str, num_prompt_tokens: int, max_tokens: int | None) -> LengthPrediction:
        """Point estimate and conservative quantile, capped by max_tokens."""
        own = self._own.get(tenant)
        if own is not None:
            return self._capped(own, max_tokens) if max_tokens is not None and own.quantile >= max_tokens else own
        key = (tenant, num_prompt_tokens, max_tokens)
        answer = self._answers.get(key)
        if answer is None:
            answer = self._answers[key] = self._predict(tenant, num_prompt_tokens, max_tokens)
        return answer

    def _predict(self, tenant: str, num_prompt_tokens: int, max_tokens: int | None) -> LengthPrediction:
        cfg = self.config
        stats = self._tenant.get(tenant)
        source = "tenant"
        if stats is None or stats.count < cfg.min_tenant_evidence:
            stats = self._bucket.get(self.bucket_of(num_prompt_tokens))
            source = "bucket"
            if stats is None or stats.count < cfg.min_bucket_evidence:
                stats = self._global
                source = "global"
                if stats.count < cfg.min_global_evidence:
                    stats = None
                    source = "prior"
        mean, q = (cfg.prior_mean, cfg.prior_quantile) if stats is None else (stats.mean, stats.quantile)
        if source == "tenant":
            own = self._own[tenant] = LengthPrediction(mean, q, source)
            return self._capped(own, max_tokens) if max_tokens is not None and q >= max_tokens else own
        if max_tokens is not None and q >= max_tokens:
            return self._capped(LengthPrediction(mean, q, source), max_tokens)
        return LengthPrediction(mean, q, source)

    @staticmethod
    def _capped(answer: LengthPrediction, max_tokens: int) -> LengthPrediction:
        """`answer` for a request that may generate at most `max_tokens` (<= its quantile)."""
        mean = answer.mean
        return LengthPrediction(min(mean, float(max_tokens)), float(max_tokens),
                                "max_tokens" if mean >= max_tokens else answer.source)

    def export_state(self) -> dict[str, Any]:
        """Every history (per tenant, per prompt-length bucket, global), JSON-safe."""
        return {
            "tenants": {t: s.export_state() for t, s in self._tenant.items()},
            "buckets": {str(b): s.export_state() for b, s in self._bucket.items()},
            "global": self._global.export_state(),
        }

    def restore_state(
        self, tenants: Mapping[str, History], buckets: Mapping[int, History], global_history: History
    ) -> None:
        """Resume the histories of `export_state()` (values oldest first, evidence count)."""
        def stats(history: History) -> RecentStats:
            s = self._new()
            s.restore_state(*history)
            return s

        self._tenant = {t: stats(h) for t, h in tenants.items()}
        self._bucket = {b: stats(h) for b, h in buckets.items()}
        self._global = stats(global_history)
        self._answers.clear()
        self._own.clear()

    def observe(self, tenant: str, num_prompt_tokens: int, num_output_tokens: int) -> None:
        """Learn from a finished request."""
        self._answers.clear()
        own = self._own
        if tenant in own:  # not own.pop(tenant, None): a generic method call when compiled
            del own[tenant]
        value = _LENGTHS[num_output_tokens] if 0 <= num_output_tokens < 4096 else float(num_output_tokens)
        stats = self._tenant.get(tenant)
        if stats is None:
            stats = self._tenant[tenant] = self._new()
        stats.add(value)
        b = self.bucket_of(num_prompt_tokens)
        bstats = self._bucket.get(b)
        if bstats is None:
            bstats = self._bucket[b] = self._new()
        bstats.add(value)
        self._global.add(value)


picklable_when_compiled(OutputLengthConfig)  # frozen: see equinox.compiled
