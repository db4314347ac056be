"""One run's summary: latency, throughput, fairness (both sides), utilisation, per tenant and overall."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, overload

from equinox.metrics.collector import RequestRecord, TimeSeries
from equinox.metrics.fairness import FairnessSummary, ServiceMatrix, fairness, service_matrix
from equinox.metrics.holistic import HolisticFairness, Reference, holistic_fairness, records_end_time
from equinox.metrics.latency import LatencySummary, Throughput
from equinox.metrics.records import Columns, RecordColumns, as_columns
from equinox.metrics.resource import ResourceFairness, resource_fairness
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
    holistic: HolisticFairness | None = None

    def as_dict(self) -> dict[str, Any]:
        """Plain dict for JSON."""
        out = {
            "latency": self.latency.as_dict(),
            "throughput": dict(self.throughput.__dict__),
            "fairness": self.fairness.as_dict(),
            "utilisation": self.utilisation.as_dict(),
            "num_preemptions": self.num_preemptions,
            "tenants": [t.as_dict() for t in self.tenants],
        }
        if self.holistic is not None:
            out["holistic"] = self.holistic.as_dict()
        return out

    def with_reference(
        self, records: Sequence[RequestRecord] | RecordColumns | Columns, reference: Reference, *,
        weights: Mapping[str, float],
        arrival_end_time: float, end_time: float, prompt_weight: float = 1.0, output_weight: float = 2.0,
    ) -> RunSummary:
        """This summary with the metrics that need the simulator's reference runs filled in."""
        resource = self.holistic.resource if self.holistic is not None else ResourceFairness.unavailable()
        holistic = holistic_fairness(
            records, tenants=[t.tenant for t in self.tenants], weights=weights, token=self.fairness,
            resource=resource, arrival_end_time=arrival_end_time, end_time=end_time,
            prompt_weight=prompt_weight, output_weight=output_weight, reference=reference,
        )
        return dataclasses.replace(self, holistic=holistic)


@overload
def summarise(
    records: Sequence[RequestRecord] | RecordColumns | Columns,
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
    reference: Reference | None = None,
    keep_matrix: Literal[True] = True,
) -> tuple[RunSummary, ServiceMatrix]: ...


@overload
def summarise(
    records: Sequence[RequestRecord] | RecordColumns | Columns,
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
    reference: Reference | None = None,
    keep_matrix: Literal[False],
) -> tuple[RunSummary, None]: ...


def summarise(
    records: Sequence[RequestRecord] | RecordColumns | Columns,
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
    reference: Reference | None = None,
    keep_matrix: bool = True,
) -> tuple[RunSummary, ServiceMatrix | None]:
    """Compute the run summary (and the service matrix, for plots and CSV).

    With `reference` (the simulator's served-alone runs and capacity) the user-side,
    isolation and holistic indices are computed too; without, they are NaN. With
    `keep_matrix=False` no matrix is returned (None) and its tenant x interval arrays go
    as soon as the summary is done with each (issue 13: ~19 MiB each at 1M requests, which
    would otherwise outlive the summary's own temporaries).
    """
    records = as_columns(records)
    throughput = Throughput.of_columns(records)
    matrix = service_matrix(records, series, weights, prompt_weight, output_weight, with_waiting=keep_matrix)
    fair = fairness(matrix, arrival_end_time, window_s, warmup_s)
    names, queued = matrix.tenants, matrix.queued
    services = [float(row.sum()) for row in matrix.service]  # each tenant's weighted service
    kept = matrix if keep_matrix else None
    del matrix  # without keep_matrix, service, demand and waiting go here; queued stays for the resource windows
    resource = resource_fairness(series, names, queued, weights, arrival_end_time, window_s, warmup_s)
    del queued
    holistic = holistic_fairness(
        records, tenants=names, weights=weights, token=fair, resource=resource,
        arrival_end_time=arrival_end_time, end_time=max(len(series) * series.interval_s, records_end_time(records)),
        prompt_weight=prompt_weight, output_weight=output_weight, reference=reference,
    )
    tenants = []
    for i, tenant in enumerate(names):
        rs = records.of_tenant(tenant)
        tenants.append(
            TenantSummary(
                tenant, float(weights.get(tenant, 1.0)), len(rs), int(rs.is_finished.sum()), int(rs.rejected.sum()),
                services[i], LatencySummary.of_columns(rs),
            )
        )
        del rs  # one tenant's copied rows at a time
    summary = RunSummary(
        LatencySummary.of_columns(records), throughput, fair,
        Utilisation.of(series, throughput.span_s, peak_flops), tuple(tenants), num_preemptions, holistic,
    )
    return summary, kept
