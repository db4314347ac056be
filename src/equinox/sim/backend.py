"""The engine seam: one `execute` call turns a scheduled iteration into a step result."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from equinox.errors import BackendError
from equinox.sim.cost_model import CostModel
from equinox.sim.engine.base import SchedulerOutput
from equinox.types import BatchShape, StepResult


class EngineBackend(Protocol):
    """Executes iterations (a cost model in the simulator, or a real engine)."""

    def execute(self, output: SchedulerOutput) -> StepResult:
        """Run one iteration and report how long it took."""
        ...


class CostModelBackend:
    """A simulated engine: the iteration takes what the cost model says."""

    def __init__(self, cost_model: CostModel) -> None:
        self.cost_model = cost_model

    def execute(self, output: SchedulerOutput) -> StepResult:
        """Time the batch with the cost model."""
        return StepResult(self.time_of(output.batch))

    def decode_time_of(self) -> Callable[[int, int], float] | None:
        """A faster `time_of` for decode-only batches (sequences, context tokens), if the model has one."""
        fast = getattr(self.cost_model, "decode_time", None)
        if fast is None:
            return None
        name = self.cost_model.name

        def decode_time(num_seqs: int, context_tokens: int) -> float:
            duration: float = fast(num_seqs, context_tokens)
            if not duration > 0.0:
                raise BackendError(f"cost model {name!r} returned a non-positive iteration time {duration!r}")
            return duration

        return decode_time

    def time_of(self, batch: BatchShape) -> float:
        """Seconds an iteration of `batch` takes (lets the simulator fold identical decode iterations)."""
        duration = self.cost_model.iteration_time(batch)
        if not duration > 0.0:
            raise BackendError(
                f"cost model {self.cost_model.name!r} returned a non-positive iteration time {duration!r}"
            )
        return duration


class FunctionBackend:
    """Wraps a plain function of the batch shape (for tests, like httpx's MockTransport)."""

    def __init__(self, fn: Callable[[SchedulerOutput], float]) -> None:
        self._fn = fn

    def execute(self, output: SchedulerOutput) -> StepResult:
        """Call the function."""
        return StepResult(float(self._fn(output)))
