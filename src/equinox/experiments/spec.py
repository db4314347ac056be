"""What an experiment is: a named list of runs, some placed at a load relative to measured capacity."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from equinox.config import RunConfig

if TYPE_CHECKING:
    from equinox.report.load import RunData
    from equinox.report.plots import Plot
    from equinox.report.tables import Table

# (specs, their loaded runs, plot directory) -> extra tables and figures for the report and results.md
Analysis = Callable[[Sequence["RunSpec"], Sequence["RunData"], Path], tuple[list["Table"], list["Plot"]]]

PROBE_RATE_SCALE = 20.0  # far past saturation on every platform we ship
PROBE_DURATION_S = 60.0


@dataclass(frozen=True)
class RunSpec:
    """One run of an experiment.

    When `rho` is set, the config's rate_scale is replaced so that the offered load is `rho` times the
    platform's saturated capacity on that workload (measured by a probe, as in benchmarks/equinox_eval.py).
    When `rpm_share` is set, rpm_limit becomes that fraction of capacity (requests/min) per tenant.
    """

    path: str  # run directory, relative to <out>/runs
    config: RunConfig
    section: str  # heading of the results table the run belongs to
    labels: tuple[tuple[str, str], ...]  # leading columns of its results row, e.g. (("workload", "sharegpt"),)
    variant: str  # the policy as shown in legends, e.g. "vtc@slora" or "equinox α=0.5 β=0.5"
    rho: float | None = None
    rpm_share: float | None = None
    is_detailed: bool = False  # per-run figures in the report

    @property
    def probe_key(self) -> ProbeKey:
        """Which capacity probe this run needs."""
        c = self.config
        return ProbeKey(c.workload, c.gpu, c.model, c.tensor_parallel, c.seed, c.num_tenants)

    @property
    def needs_probe(self) -> bool:
        """True when the run is placed relative to capacity."""
        return self.rho is not None or self.rpm_share is not None


@dataclass(frozen=True, order=True)
class ProbeKey:
    """A workload on a platform: what a capacity probe measures."""

    workload: str
    gpu: str
    model: str
    tensor_parallel: int
    seed: int
    num_tenants: int | None

    def probe_config(self) -> RunConfig:
        """A short, heavily overloaded FCFS run on the chunked engine."""
        return RunConfig(workload=self.workload, policy="fcfs", gpu=self.gpu, model=self.model,
                         tensor_parallel=self.tensor_parallel, seed=self.seed, num_tenants=self.num_tenants,
                         duration_s=PROBE_DURATION_S, rate_scale=PROBE_RATE_SCALE)


@dataclass(frozen=True)
class Capacity:
    """What a probe measured: saturated requests/s, and the workload's own rate at rate_scale 1."""

    capacity_req_s: float
    base_req_s: float
    num_tenants: int

    def rate_scale(self, rho: float) -> float:
        """Rate scale giving an offered load of `rho` x capacity."""
        return rho * self.capacity_req_s / self.base_req_s

    def rpm_limit(self, share: float) -> float:
        """Requests per minute per tenant: `share` of capacity split evenly over tenants."""
        return max(1.0, share * self.capacity_req_s * 60.0 / max(1, self.num_tenants))


@dataclass(frozen=True)
class ExperimentSet:
    """A named experiment: its runs (full or quick) and how its results tables compare policies."""

    name: str
    description: str
    build: Callable[[bool], list[RunSpec]]
    # (variant, reference variant) pairs for "relative to" tables in results.md
    comparisons: tuple[tuple[str, str], ...] = ()
    max_scenarios: int | None = None  # scenario figures in the report (None: all)
    notes: Mapping[str, str] = field(default_factory=dict)
    analyse: Analysis | None = None  # experiment-specific tables and figures (e.g. Pareto views)

    def specs(self, quick: bool) -> list[RunSpec]:
        """The runs, checked for duplicate paths."""
        specs = self.build(quick)
        seen: set[str] = set()
        for s in specs:
            if s.path in seen:
                raise ValueError(f"experiment {self.name}: two runs share the directory {s.path}")
            seen.add(s.path)
        return specs
