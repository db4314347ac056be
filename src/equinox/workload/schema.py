"""A workload: requests sorted by arrival plus per-tenant weights and provenance."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from equinox.request import RequestSpec


@dataclass(frozen=True)
class Workload:
    """Requests sorted by arrival time, tenant weights, and where they came from."""

    name: str
    requests: tuple[RequestSpec, ...]
    tenant_weights: Mapping[str, float] = field(default_factory=dict)
    is_synthetic_tenants: bool = False
    source: str = ""
    duration_s: float | None = None

    @property
    def tenants(self) -> list[str]:
        """Tenants in order of first appearance."""
        return list(dict.fromkeys(r.tenant for r in self.requests))

    def weight(self, tenant: str) -> float:
        """The tenant's weight (1.0 unless set)."""
        return float(self.tenant_weights.get(tenant, 1.0))
