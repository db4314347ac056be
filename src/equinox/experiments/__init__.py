"""Named experiment sets (paper, vtc-suites, load-sweep, alpha-beta) and their parallel runner."""

from __future__ import annotations

from equinox.experiments.runner import ExperimentOutcome, run_experiment
from equinox.experiments.sets import EXPERIMENTS, experiment_names, get_experiment
from equinox.experiments.spec import Capacity, ExperimentSet, ProbeKey, RunSpec

__all__ = [
    "EXPERIMENTS", "Capacity", "ExperimentOutcome", "ExperimentSet", "ProbeKey", "RunSpec", "experiment_names",
    "get_experiment", "run_experiment",
]
