"""GPU-utilisation expert: busy fraction (from observed gaps) and MFU of a planned batch."""

from __future__ import annotations

from collections.abc import Callable

from equinox.types import BatchShape, batch_is_empty


class UtilisationExpert:
    """Predicts model-FLOPs utilisation of a batch and tracks the engine's busy fraction."""

    def __init__(
        self,
        iteration_time: Callable[[BatchShape], float],
        flops: Callable[[BatchShape], float] | None,
        peak_flops: float,
        ema: float = 0.05,
    ) -> None:
        self._iteration_time = iteration_time
        self._flops = flops
        self._peak = peak_flops
        self._ema = ema
        self.busy_fraction = 1.0
        self._last_end: float | None = None

    def mfu(self, batch: BatchShape) -> float:
        """Predicted model-FLOPs utilisation of one iteration of `batch` (0 when unknown)."""
        if self._flops is None or self._peak <= 0 or batch_is_empty(batch):
            return 0.0
        return self._flops(batch) / (self._iteration_time(batch) * self._peak)

    def export_state(self) -> dict[str, float | None]:
        """The busy-fraction average and the end of the last iteration seen."""
        return {"busy_fraction": self.busy_fraction, "last_end_time": self._last_end}

    def restore_state(self, busy_fraction: float, last_end_time: float | None) -> None:
        """Resume from `export_state()`."""
        self.busy_fraction = busy_fraction
        self._last_end = last_end_time

    def observe(self, start_time: float, duration_s: float) -> None:
        """Fold one executed iteration into the busy-fraction average."""
        if self._last_end is not None:
            span = start_time + duration_s - self._last_end
            if span > 0:
                busy = min(1.0, duration_s / span)
                self.busy_fraction += self._ema * (busy - self.busy_fraction)
        self._last_end = start_time + duration_s
