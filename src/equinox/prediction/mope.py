"""MoPE: the Mixture of Prediction Experts behind one interface.

Equinox needs, before scheduling, quantities only known after execution (the
"scheduling paradox" of the paper's abstract): how long a request's output will be,
how long iterations take (throughput), when its first token will come (latency), and
how busy the GPU will be. Each expert is deterministic and costs microseconds; the
gate for output length picks the most specific source with enough evidence.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from equinox.prediction.experts.iteration_time import IterationTimeExpert
from equinox.prediction.experts.output_length import OutputLengthConfig, OutputLengthExpert
from equinox.prediction.experts.ttft import TtftExpert
from equinox.prediction.experts.utilisation import UtilisationExpert
from equinox.prediction.interface import LengthPrediction
from equinox.types import BatchShape, StepReport

if TYPE_CHECKING:
    from equinox.scheduling.state import StateReader


class MoPE:
    """Output length, iteration time, TTFT and utilisation predictions; fed by observations."""

    def __init__(
        self,
        *,
        cost_model: Callable[[BatchShape], float] | None = None,
        flops: Callable[[BatchShape], float] | None = None,
        peak_flops: float = 0.0,
        output_config: OutputLengthConfig | None = None,
    ) -> None:
        self.output_length = OutputLengthExpert(output_config)
        self.iteration = IterationTimeExpert(cost_model)
        self.ttft = TtftExpert(self.iteration.predict)
        self.utilisation = UtilisationExpert(self.iteration.predict, flops, peak_flops)

    def predict_output(self, tenant: str, num_prompt_tokens: int, max_tokens: int | None) -> LengthPrediction:
        """Output-length expert."""
        return self.output_length.predict(tenant, num_prompt_tokens, max_tokens)

    def predict_iteration_s(self, batch: BatchShape) -> float:
        """Iteration-time expert (seconds)."""
        return self.iteration.predict(batch)

    def predict_mfu(self, batch: BatchShape) -> float:
        """Model-FLOPs utilisation of `batch`."""
        return self.utilisation.mfu(batch)

    def observe_step(self, report: StepReport, mean_batch: BatchShape | None = None) -> None:
        """Learn from an executed iteration (`mean_batch`: `report.mean_batch`, if the caller has it)."""
        self.iteration.observe(report.mean_batch if mean_batch is None else mean_batch,
                               report.duration_s / report.num_steps)
        self.utilisation.observe(report.start_time, report.duration_s)

    def observe_finish(self, tenant: str, num_prompt_tokens: int, num_output_tokens: int) -> None:
        """Learn from a finished request's true output length."""
        self.output_length.observe(tenant, num_prompt_tokens, num_output_tokens)

    # What MoPE learned, for policy state (scheduling/state.py) -------------------------
    def export_state(self) -> dict[str, Any]:
        """Every expert's learned state, JSON-safe: output-length histories, iteration-time
        corrections (and the online model when no cost model is bound), the busy fraction."""
        online = self.iteration.online
        return {
            "output_length": self.output_length.export_state(),
            "iteration": self.iteration.export_state(),
            "online_model": None if online is None else online.export_state(),
            "utilisation": self.utilisation.export_state(),
        }

    def restore_state(self, reader: StateReader, *, has_same_base: bool = True) -> None:
        """Resume from `export_state()` as read by `reader`. Iteration-time corrections learned
        against another base model (`has_same_base` False: another platform) are not restored."""
        out = reader.sub("output_length")

        def history(r: StateReader) -> tuple[list[float], int]:
            return r.numbers("values"), r.integer("count", 0)

        tenants = {t: history(r) for t, r in out.mappings("tenants").items()}
        buckets: dict[int, tuple[list[float], int]] = {}
        for b, r in out.mappings("buckets").items():
            if not b.isdigit():
                raise reader.error("output_length.buckets", "keyed by bucket numbers", b)
            buckets[int(b)] = history(r)
        self.output_length.restore_state(tenants, buckets, history(out.sub("global")))
        util = reader.sub("utilisation")
        self.utilisation.restore_state(util.number("busy_fraction", 1.0), util.optional_number("last_end_time"))
        if not has_same_base:
            return
        it = reader.sub("iteration")
        raw = it.state.get("ratios", [])
        ratios: dict[tuple[str, int], float] = {}
        if not isinstance(raw, list):
            raise it.error("ratios", "a list of [phase, size, ratio]", raw)
        for item in raw:
            ok = (isinstance(item, list) and len(item) == 3 and item[0] in ("prefill", "decode")
                  and isinstance(item[1], int) and not isinstance(item[1], bool)
                  and isinstance(item[2], (int, float)) and not isinstance(item[2], bool) and item[2] > 0)
            if not ok:
                raise it.error("ratios", "a list of [phase, size, ratio > 0]", item)
            ratios[(item[0], item[1])] = float(item[2])
        self.iteration.restore_state(ratios, it.integer("num_observations", 0))
        online = self.iteration.online
        if online is not None and reader.state.get("online_model") is not None:
            m = reader.sub("online_model")
            try:
                online.restore_state(m.number_rows("xtx"), m.numbers("xty"), m.numbers("theta"),
                                     m.flag("is_dirty"), m.integer("num_observations", 0))
            except ValueError as exc:
                raise m.error("xtx", str(exc), m.state.get("xtx")) from None
