"""A workload: requests sorted by arrival plus per-tenant weights and provenance."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from equinox.request import RequestSpec


@dataclass(frozen=True)
class Workload:
    """Requests sorted by (arrival_time, request_id), tenant weights, and where they came from.

    `is_synthetic_tenants` is True when tenants were assigned by Equinox to a trace that
    has none (Zipf, round-robin, ServeGen shapes); `tenant_assignment` then says how,
    and every writer and report repeats that label.
    """

    name: str
    requests: tuple[RequestSpec, ...]
    tenant_weights: Mapping[str, float] = field(default_factory=dict)
    is_synthetic_tenants: bool = False
    source: str = ""
    duration_s: float | None = None
    tenant_assignment: str | None = None
    trace_format: str = ""
    num_skipped_rows: int = 0
    warnings: tuple[str, ...] = ()

    @property
    def tenants(self) -> list[str]:
        """Tenants in order of first appearance."""
        return list(dict.fromkeys(r.tenant for r in self.requests))

    def weight(self, tenant: str) -> float:
        """The tenant's weight (1.0 unless set)."""
        return float(self.tenant_weights.get(tenant, 1.0))

    @property
    def num_requests(self) -> int:
        """Number of requests."""
        return len(self.requests)

    @property
    def tenant_label(self) -> str:
        """One line saying where tenants come from (labels synthetic assignment)."""
        if self.is_synthetic_tenants:
            return f"SYNTHETIC tenants ({self.tenant_assignment or 'assigned by Equinox'})"
        return self.tenant_assignment or "tenants from the source"
