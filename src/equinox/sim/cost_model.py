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


class CostModelFactory(Protocol):
    """Builds a cost model for a deployment (raises ConfigError if it has no data for it)."""

    def __call__(self, deployment: Deployment) -> CostModel: ...


COST_MODELS: Registry[CostModelFactory] = Registry("cost model")
