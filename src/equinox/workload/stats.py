"""Per-tenant statistics of a workload: counts, rates, burstiness, length quantiles."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from equinox.workload.schema import Workload

QUANTILES = (0.5, 0.9, 0.99)


@dataclass(frozen=True)
class LengthStats:
    """Mean and quantiles of a token-length column."""

    mean: float
    p50: float
    p90: float
    p99: float
    max: int


@dataclass(frozen=True)
class TenantStats:
    """One tenant's (or the whole trace's) request statistics."""

    tenant: str
    num_requests: int
    rate_req_per_s: float
    burstiness_cv: float
    prompt: LengthStats
    output: LengthStats
    weight: float


@dataclass(frozen=True)
class TraceStats:
    """What `equinox trace inspect` prints."""

    name: str
    source: str
    trace_format: str
    tenant_label: str
    is_synthetic_tenants: bool
    num_requests: int
    duration_s: float
    total: TenantStats
    tenants: tuple[TenantStats, ...]
    num_skipped_rows: int
    warnings: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (JSON-ready; NaN becomes None)."""

        def clean(x: Any) -> Any:
            if isinstance(x, float) and not math.isfinite(x):
                return None
            if isinstance(x, dict):
                return {k: clean(v) for k, v in x.items()}
            if isinstance(x, (list, tuple)):
                return [clean(v) for v in x]
            return x

        return clean(asdict(self))  # type: ignore[no-any-return]


def _lengths(x: np.ndarray) -> LengthStats:
    if not len(x):  # a tenant (or a whole trace cut by --duration) without requests
        return LengthStats(math.nan, math.nan, math.nan, math.nan, 0)
    q = np.quantile(x, QUANTILES)
    return LengthStats(float(x.mean()), float(q[0]), float(q[1]), float(q[2]), int(x.max()))


def _tenant(name: str, t: np.ndarray, p: np.ndarray, o: np.ndarray, span: float, weight: float) -> TenantStats:
    gaps = np.diff(t)
    cv = float(gaps.std() / gaps.mean()) if len(gaps) >= 2 and gaps.mean() > 0 else math.nan
    rate = len(t) / span if span > 0 else math.nan
    return TenantStats(name, len(t), rate, cv, _lengths(p), _lengths(o), weight)


def trace_stats(workload: Workload) -> TraceStats:
    """Statistics of `workload`, overall and per tenant (tenants in order of first arrival)."""
    reqs = workload.requests
    t = np.fromiter((r.arrival_time for r in reqs), dtype=float, count=len(reqs))
    p = np.fromiter((r.num_prompt_tokens for r in reqs), dtype=np.int64, count=len(reqs))
    o = np.fromiter((r.num_output_tokens for r in reqs), dtype=np.int64, count=len(reqs))
    rows: dict[str, list[int]] = {}  # grouped in Python: numpy string comparison drops trailing NULs
    for i, r in enumerate(reqs):
        rows.setdefault(r.tenant, []).append(i)
    span = workload.duration_s or (float(t[-1]) if len(t) else 0.0)
    tenants = tuple(
        _tenant(name, t[idx], p[idx], o[idx], span, workload.weight(name))
        for name in workload.tenants
        for idx in [np.asarray(rows.get(name, []), dtype=np.int64)]
    )
    return TraceStats(
        name=workload.name,
        source=workload.source,
        trace_format=workload.trace_format,
        tenant_label=workload.tenant_label,
        is_synthetic_tenants=workload.is_synthetic_tenants,
        num_requests=len(reqs),
        duration_s=span,
        total=_tenant("(all)", t, p, o, span, 1.0),
        tenants=tenants,
        num_skipped_rows=workload.num_skipped_rows,
        warnings=workload.warnings,
    )


def format_stats(stats: TraceStats, max_tenants: int = 50) -> str:
    """A fixed-width text report of `stats`."""
    lines = [
        f"workload   {stats.name}",
        f"source     {stats.source}",
        f"format     {stats.trace_format or '-'}",
        f"tenants    {len(stats.tenants)}: {stats.tenant_label}",
        f"requests   {stats.num_requests} over {stats.duration_s:.1f} s",
    ]
    if stats.num_skipped_rows:
        lines.append(f"skipped    {stats.num_skipped_rows} bad row(s)")
    for w in stats.warnings:
        lines.append(f"warning    {w}")
    head = (f"{'tenant':<16} {'weight':>6} {'reqs':>8} {'req/s':>8} {'cv':>6} "
            f"{'in p50':>7} {'in p90':>7} {'in p99':>7} {'out p50':>7} {'out p90':>7} {'out p99':>7}")
    lines += ["", head, "-" * len(head)]
    rows = [*stats.tenants[:max_tenants], stats.total]
    for s in rows:
        lines.append(
            f"{s.tenant[:16]:<16} {s.weight:>6.3g} {s.num_requests:>8} {s.rate_req_per_s:>8.3f} "
            f"{s.burstiness_cv:>6.2f} {s.prompt.p50:>7.0f} {s.prompt.p90:>7.0f} {s.prompt.p99:>7.0f} "
            f"{s.output.p50:>7.0f} {s.output.p90:>7.0f} {s.output.p99:>7.0f}"
        )
    if len(stats.tenants) > max_tenants:
        lines.insert(-1, f"... {len(stats.tenants) - max_tenants} more tenant(s)")
    return "\n".join(lines)
