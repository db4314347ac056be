"""MoPE: the Mixture of Prediction Experts behind one interface.

Equinox needs, before scheduling, quantities only known after execution (the
"scheduling paradox" of the paper's abstract): how long a request's output will be,
how long iterations take (throughput), when its first token will come (latency), and
how busy the GPU will be. Each expert is deterministic and costs microseconds; the
gate for output length picks the most specific source with enough evidence.
"""

from __future__ import annotations

from collections.abc import Callable

from equinox.prediction.experts.iteration_time import IterationTimeExpert
from equinox.prediction.experts.output_length import OutputLengthConfig, OutputLengthExpert
from equinox.prediction.experts.ttft import TtftExpert
from equinox.prediction.experts.utilisation import UtilisationExpert
from equinox.prediction.interface import LengthPrediction
from equinox.types import BatchShape, StepReport


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

    def observe_step(self, report: StepReport) -> None:
        """Learn from an executed iteration."""
        self.iteration.observe(report.mean_batch, report.duration_s / report.num_steps)
        self.utilisation.observe(report.start_time, report.duration_s)

    def observe_finish(self, tenant: str, num_prompt_tokens: int, num_output_tokens: int) -> None:
        """Learn from a finished request's true output length."""
        self.output_length.observe(tenant, num_prompt_tokens, num_output_tokens)
