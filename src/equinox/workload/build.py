"""Turn raw trace records into a Workload: rebase and sort times, clip, assign tenants and ids."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from equinox.errors import ConfigError, WorkloadError
from equinox.request import DEFAULT_TENANT, RequestSpec
from equinox.workload.parsing import LoadReport, RawRecord, tenant_problem
from equinox.workload.schema import Workload
from equinox.workload.tenants import TenantAssignment, parse_tenant_spec

# Request rate used for traces with no timestamps (ShareGPT, vLLM prompts) unless told.
DEFAULT_UNTIMED_RATE = 1.0


@dataclass(frozen=True)
class LoadOptions:
    """How to read a trace file; every field has a safe default."""

    format: str | None = None
    skip_bad: bool = False
    tenants: str | None = None
    num_tenants: int | None = None
    seed: int = 0
    duration_s: float | None = None
    rate_scale: float = 1.0
    rate: float | None = None
    tokenizer: str | None = None
    start_s: float = 0.0

    def __post_init__(self) -> None:
        if not (self.rate_scale > 0 and math.isfinite(self.rate_scale)):
            raise ConfigError(f"rate_scale must be > 0, got {self.rate_scale}")
        if self.duration_s is not None and not (self.duration_s > 0):
            raise ConfigError(f"duration_s must be > 0, got {self.duration_s}")
        if self.rate is not None and not (self.rate > 0 and math.isfinite(self.rate)):
            raise ConfigError(f"rate must be > 0 requests/s, got {self.rate}")
        if self.num_tenants is not None and self.num_tenants < 1:
            raise ConfigError(f"num_tenants must be >= 1, got {self.num_tenants}")
        if self.tenants is not None:
            parse_tenant_spec(self.tenants)

    @property
    def assignment(self) -> TenantAssignment | None:
        """The explicit tenant assignment, if any."""
        return parse_tenant_spec(self.tenants) if self.tenants else None

    @property
    def tenant_column(self) -> str | None:
        """The column holding tenant names when tenants=column:NAME."""
        a = self.assignment
        return a.column if a is not None and a.kind == "column" else None


def build_workload(
    records: Iterable[RawRecord],
    report: LoadReport,
    opts: LoadOptions,
    *,
    name: str,
    trace_format: str,
    source: str,
    rebase_time: bool = True,
) -> Workload:
    """Materialise records into a sorted, validated Workload (see module docstring)."""
    recs = list(records)
    report.finish()
    path = report.path
    if not recs:
        extra = f" ({report.num_skipped} bad row(s) skipped)" if report.num_skipped else ""
        raise WorkloadError(f"no requests found (empty trace){extra}", path=path)
    n = len(recs)
    report.num_rows = n + report.num_skipped
    times = _arrival_times(recs, report, opts)
    order = np.argsort(times, kind="stable")
    if n > 1 and np.any(np.diff(times) < 0):
        report.warn(f"timestamps are not sorted; sorted {n} requests by arrival time")
    if rebase_time or times[order[0]] < 0:
        times = times - times[order[0]]
    times = times / opts.rate_scale
    if opts.duration_s is not None:
        order = order[times[order] < opts.duration_s]
        if len(order) == 0:
            raise WorkloadError(f"no requests arrive within the first {opts.duration_s:g} s", path=path)
    tenants, synthetic, label = _tenants(recs, order, times, report, opts)
    weights = _weights(recs, order, tenants, path)
    ids = _request_ids(recs, order, path)
    specs = []
    slots: list[RawRecord | None] = list(recs)
    del recs  # records are released one by one below, so peak memory stays near one copy
    for j, i in enumerate(order):
        r = slots[i]
        assert r is not None
        slots[i] = None
        try:
            specs.append(
                RequestSpec(
                    ids[j], tenants[j], float(times[i]), r.num_prompt_tokens, r.num_output_tokens,
                    r.max_tokens, r.prompt_text, r.prefix_hashes, r.tenant_weight,
                )
            )
        except WorkloadError as exc:
            raise WorkloadError(str(exc), path=path, line=r.line) from None
    specs.sort(key=lambda s: (s.arrival_time, s.request_id))
    span = specs[-1].arrival_time if opts.duration_s is None else opts.duration_s
    return Workload(
        name=name,
        requests=tuple(specs),
        tenant_weights=weights,
        is_synthetic_tenants=synthetic,
        source=source,
        duration_s=span,
        tenant_assignment=label,
        trace_format=trace_format,
        num_skipped_rows=report.num_skipped,
        warnings=tuple(report.warnings),
    )


def _arrival_times(recs: list[RawRecord], report: LoadReport, opts: LoadOptions) -> np.ndarray:
    missing = [r for r in recs if r.arrival_time is None]
    if not missing:
        return np.fromiter((r.arrival_time for r in recs), dtype=float, count=len(recs))  # type: ignore[misc]
    if len(missing) != len(recs):
        raise WorkloadError(
            "some rows have a timestamp and some do not; give every row one or none",
            path=report.path,
            line=missing[0].line,
            field="timestamp",
        )
    rate = opts.rate if opts.rate is not None else DEFAULT_UNTIMED_RATE
    report.warn(f"no timestamps in the trace; Poisson arrivals at {rate:g} req/s (seed {opts.seed})")
    rng = np.random.default_rng([opts.seed, 0xA771])
    return np.cumsum(rng.exponential(1.0 / rate, size=len(recs)))


def _tenants(
    recs: list[RawRecord], order: np.ndarray, times: np.ndarray, report: LoadReport, opts: LoadOptions
) -> tuple[list[str], bool, str | None]:
    has_tenants = any(r.tenant for r in recs)
    explicit = opts.assignment
    if explicit is not None and explicit.kind == "column":
        explicit = None  # the reader already filled tenants from the column
        label: str | None = f"column {opts.tenant_column!r}"
    else:
        label = None
    if has_tenants and (explicit is None or explicit.kind == "single"):
        if opts.num_tenants is not None:
            report.warn("the trace has its own tenants; num_tenants is ignored")
        out = []
        for i in order:
            t = recs[i].tenant
            problem = tenant_problem(t or "")
            if problem is not None:
                raise WorkloadError(problem, path=report.path, line=recs[i].line, field="tenant")
            out.append(t)
        return out, False, label
    if explicit is None and opts.num_tenants is not None and opts.num_tenants > 1:
        explicit = TenantAssignment("zipf", num_tenants=opts.num_tenants)
    if explicit is None or explicit.kind == "single":
        return [DEFAULT_TENANT] * len(order), False, "single tenant (the trace has none)"
    if has_tenants:
        report.warn(f"replaced the trace's own tenants by {explicit.label(opts.seed)}")
    names = explicit.assign(times[order], opts.seed)
    return names, True, explicit.label(opts.seed)


def _weights(
    recs: list[RawRecord], order: np.ndarray, tenants: list[str], path: str
) -> dict[str, float]:
    weights: dict[str, float] = {}
    for j, i in enumerate(order):
        w = recs[i].tenant_weight
        if w is None:
            continue
        old = weights.setdefault(tenants[j], w)
        if old != w:
            raise WorkloadError(
                f"tenant {tenants[j]!r} has weight {w} here but {old} earlier; use one weight per tenant",
                path=path,
                line=recs[i].line,
                field="tenant_weight",
            )
    return weights


def _request_ids(recs: list[RawRecord], order: np.ndarray, path: str) -> list[str]:
    if all(r.request_id for r in recs):
        seen: dict[str, int] = {}
        out = []
        for i in order:
            rid = str(recs[i].request_id)
            if rid in seen:
                raise WorkloadError(
                    f"duplicate request_id {rid!r} (first on line {seen[rid]})",
                    path=path,
                    line=recs[i].line,
                    field="request_id",
                )
            seen[rid] = recs[i].line
            out.append(rid)
        return out
    width = max(6, len(str(len(recs))))
    return [f"r{i:0{width}d}" for i in order]
