"""One run's summary: latency, throughput, fairness, utilisation, per tenant and overall."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from equinox.metrics.collector import RequestRecord, TimeSeries
from equinox.metrics.fairness import FairnessSummary, ServiceMatrix, fairness, service_matrix
from equinox.metrics.latency import LatencySummary, Throughput
from equinox.metrics.utilisation import Utilisation


@dataclass(frozen=True)
class TenantSummary:
    """One tenant's share of the run."""

    tenant: str
    weight: float
    num_requests: int
    num_finished: int
    num_rejected: int
    service: float  # weighted service received (w_p * prompt + w_q * output) / weight
    latency: LatencySummary

    def as_dict(self) -> dict[str, Any]:
        """Plain dict for JSON."""
        return {
            "tenant": self.tenant, "weight": self.weight, "num_requests": self.num_requests,
            "num_finished": self.num_finished, "num_rejected": self.num_rejected,
            "service": self.service, "latency": self.latency.as_dict(),
        }


@dataclass(frozen=True)
class RunSummary:
    """Everything `equinox simulate` prints and writes to summary.json."""

    latency: LatencySummary
    throughput: Throughput
    fairness: FairnessSummary
    utilisation: Utilisation
    tenants: tuple[TenantSummary, ...]
    num_preemptions: int

    def as_dict(self) -> dict[str, Any]:
        """Plain dict for JSON."""
        return {
            "latency": self.latency.as_dict(),
            "throughput": dict(self.throughput.__dict__),
            "fairness": self.fairness.as_dict(),
            "utilisation": self.utilisation.as_dict(),
            "num_preemptions": self.num_preemptions,
            "tenants": [t.as_dict() for t in self.tenants],
        }


def summarise(
    records: Sequence[RequestRecord],
    series: TimeSeries,
    *,
    weights: Mapping[str, float],
    peak_flops: float,
    arrival_end_time: float,
    num_preemptions: int,
    prompt_weight: float = 1.0,
    output_weight: float = 2.0,
    window_s: float = 60.0,
    warmup_s: float = 30.0,
) -> tuple[RunSummary, ServiceMatrix]:
    """Compute the run summary (and the service matrix, for plots and CSV)."""
    throughput = Throughput.of(records)
    matrix = service_matrix(records, series, weights, prompt_weight, output_weight)
    fair = fairness(matrix, arrival_end_time, window_s, warmup_s)
    by_tenant: dict[str, list[RequestRecord]] = {}
    for r in records:
        by_tenant.setdefault(r.tenant, []).append(r)
    tenants = []
    for i, tenant in enumerate(matrix.tenants):
        rs = by_tenant.get(tenant, [])
        tenants.append(
            TenantSummary(
                tenant, float(weights.get(tenant, 1.0)), len(rs),
                sum(1 for r in rs if r.finish_time is not None),
                sum(1 for r in rs if r.reject_reason is not None),
                float(matrix.service[i].sum()), LatencySummary.of(rs),
            )
        )
    summary = RunSummary(
        LatencySummary.of(records), throughput, fair,
        Utilisation.of(series, throughput.span_s, peak_flops), tuple(tenants), num_preemptions,
    )
    return summary, matrix
