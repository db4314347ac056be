"""User-side fairness, isolation and the holistic index (docs/algorithm.md, "Fairness metrics", M1-M6).

Direction is in every name: `*_index` is in [0, 1], higher is fairer; `*_inflation` is a
latency ratio against the same tenant served alone, lower is better (1 = as if alone).
Metrics that need the simulator's reference runs (served-alone records, the saturation
capacity) are NaN without a `Reference`; live runs report the rest.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from equinox.metrics.collector import RequestRecord
from equinox.metrics.fairness import FairnessSummary, jain_index
from equinox.metrics.latency import Stats
from equinox.metrics.records import Columns, RecordColumns, as_columns
from equinox.metrics.resource import ResourceFairness

# M6: user side and resource side count equally (DESIGN.md's alpha = beta = 0.5); isolation,
# a worst-case check of the user side, half as much. Fixed before any sweep (issue 11).
HOLISTIC_WEIGHTS: Mapping[str, float] = {"user": 0.4, "resource": 0.4, "isolation": 0.2}
NAN = math.nan


@dataclass(frozen=True)
class Reference:
    """What the simulator's reference runs measured (policy FCFS, same engine and platform)."""

    alone: Mapping[str, Sequence[RequestRecord] | RecordColumns | Columns]  # each tenant's requests served alone
    capacity: float  # weighted tokens/s (w_p * prompt + w_q * output) the platform serves at saturation
    policy: str = "fcfs"


@dataclass(frozen=True)
class TenantFairness:
    """One tenant's side of the fairness metrics."""

    tenant: str
    load_share: float  # offered rate / guaranteed share of capacity (> 1: flooding); NaN without capacity
    is_flooding: bool | None  # None without capacity
    ttft_inflation: float
    tpot_inflation: float
    latency_inflation: float  # sqrt(ttft * tpot) inflation (M2)
    ttft_p90_inflation: float
    rejected_fraction: float
    attainment: float  # a_i of M3 (1 for a flooding tenant)
    gpu_s: float
    kv_block_s: float

    def as_dict(self) -> dict[str, Any]:
        """Plain dict for JSON."""
        return dict(self.__dict__)


@dataclass(frozen=True)
class HolisticFairness:
    """Both sides of fairness, isolation and the holistic index of one run."""

    token_index: float  # J_tok: Jain of weighted token service vs max-min fair share (M0)
    latency_index: float  # J_lat: Jain of latency attainments (M3)
    user_index: float  # U (M3)
    resource: ResourceFairness  # R (M4)
    isolation_inflation: float  # Iso: worst within-share tenant's p90 TTFT inflation while one floods (M5)
    isolation_index: float  # iota = min(1, 1 / Iso)
    holistic_index: float  # H (M6)
    terms: tuple[str, ...] = ()  # the terms of H that were defined
    capacity: float = NAN
    num_flooding: int = 0
    num_within_share: int = 0
    has_reference: bool = False
    tenants: tuple[TenantFairness, ...] = field(default_factory=tuple)

    @property
    def resource_index(self) -> float:
        """R: mean over windows of Jain's index of dominant shares vs fair shares."""
        return self.resource.index_mean

    def as_dict(self) -> dict[str, Any]:
        """Plain dict for JSON."""
        return {
            "token_index": self.token_index, "latency_index": self.latency_index, "user_index": self.user_index,
            "resource_index": self.resource.index_mean, "resource_index_min": self.resource.index_min,
            "resource_windows": self.resource.num_windows, "isolation_inflation": self.isolation_inflation,
            "isolation_index": self.isolation_index, "holistic_index": self.holistic_index,
            "terms": list(self.terms), "weights": dict(HOLISTIC_WEIGHTS), "capacity_tokens_per_s": self.capacity,
            "num_flooding": self.num_flooding, "num_within_share": self.num_within_share,
            "has_reference": self.has_reference, "tenants": [t.as_dict() for t in self.tenants],
        }


def offered_rates(records: Sequence[RequestRecord] | RecordColumns | Columns, arrival_end_time: float,
                  prompt_weight: float, output_weight: float) -> dict[str, float]:
    """lambda_i: requested weighted tokens (w_p * prompt + w_q * requested output) per second over [0, T]."""
    c = as_columns(records)
    span = max(arrival_end_time, 1e-9)
    ok = c.arrival <= arrival_end_time
    ids = c.tenant[ok]
    acc = np.zeros(len(c.tenant_names))
    np.add.at(acc, ids, (prompt_weight * c.num_prompt[ok] + output_weight * c.num_requested[ok]) / span)
    if not len(ids):
        return {}
    uniq, first = np.unique(ids, return_index=True)
    return {c.tenant_names[int(i)]: float(acc[i]) for i in uniq[np.argsort(first, kind="stable")]}


def load_shares(rates: Mapping[str, float], weights: Mapping[str, float], capacity: float) -> dict[str, float]:
    """lambda_i / g_i with g_i = capacity * w_i / sum_k w_k (M1); > 1 means the tenant floods."""
    total_w = sum(float(weights.get(t, 1.0)) for t in rates)
    if not (capacity > 0 and total_w > 0):
        return {t: NAN for t in rates}
    return {t: lam / (capacity * float(weights.get(t, 1.0)) / total_w) for t, lam in rates.items()}


def censored_ttfts(records: Sequence[RequestRecord] | RecordColumns | Columns, end_time: float) -> np.ndarray:
    """TTFTs of accepted requests; one without a first token counts (end_time - arrival), a lower bound."""
    c = as_columns(records)
    kept = ~c.rejected
    arrival = c.arrival[kept]
    ttft = c.first_token[kept] - arrival
    missing = np.isnan(ttft)
    ttft[missing] = np.maximum(0.0, end_time - arrival[missing])
    return ttft


def _ratio(a: float, b: float) -> float:
    if math.isnan(a) or math.isnan(b) or b <= 0:
        return NAN
    return a / b


def _mean(xs: np.ndarray) -> float:
    return math.fsum(xs.tolist()) / len(xs) if len(xs) else NAN


def _tpots(c: Columns) -> np.ndarray:
    t = c.tpot()
    return t[~np.isnan(t)]


def records_end_time(records: Sequence[RequestRecord] | RecordColumns | Columns) -> float:
    """The latest instant any record mentions (censoring horizon when the run's own end is unknown)."""
    return as_columns(records).end_time()


def tenant_inflation(shared: Sequence[RequestRecord] | RecordColumns | Columns,
                     alone: Sequence[RequestRecord] | RecordColumns | Columns, shared_end: float,
                     alone_end: float) -> tuple[float, float, float, float]:
    """(TTFT, TPOT, combined, p90 TTFT) inflation of one tenant against its served-alone run (M2, M5)."""
    shared, alone = as_columns(shared), as_columns(alone)
    ttft_s, ttft_a = censored_ttfts(shared, shared_end), censored_ttfts(alone, alone_end)
    ttft = _ratio(_mean(ttft_s), _mean(ttft_a))
    tpot = _ratio(_mean(_tpots(shared)), _mean(_tpots(alone)))
    p90 = _ratio(Stats.of_array(ttft_s).p90, Stats.of_array(ttft_a).p90)
    if math.isnan(ttft):
        combined = NAN
    elif math.isnan(tpot):
        combined = ttft
    else:
        combined = math.sqrt(ttft * tpot)
    return ttft, tpot, combined, p90


def combine(terms: Mapping[str, float], weights: Mapping[str, float]) -> tuple[float, tuple[str, ...]]:
    """Weighted mean of the defined (non-NaN) terms, renormalised; NaN when none is defined."""
    used = tuple(k for k, v in terms.items() if not math.isnan(v))
    total = sum(weights[k] for k in used)
    if not used or total <= 0:
        return NAN, ()
    return sum(weights[k] * terms[k] for k in used) / total, used


def holistic_fairness(
    records: Sequence[RequestRecord] | RecordColumns | Columns,
    *,
    tenants: Sequence[str],
    weights: Mapping[str, float],
    token: FairnessSummary,
    resource: ResourceFairness,
    arrival_end_time: float,
    end_time: float,
    prompt_weight: float = 1.0,
    output_weight: float = 2.0,
    reference: Reference | None = None,
) -> HolisticFairness:
    """Every metric of docs/algorithm.md's "Fairness metrics" for one run (baseline parts NaN without `reference`)."""
    c = as_columns(records)
    present = set(c.present_tenants())
    order = list(dict.fromkeys([*tenants, *c.present_tenants()]))
    capacity = reference.capacity if reference is not None else NAN
    rates = offered_rates(c, arrival_end_time, prompt_weight, output_weight)
    shares = load_shares({t: rates.get(t, 0.0) for t in order if t in present}, weights, capacity)
    rows: list[TenantFairness] = []
    for tenant in order:
        rs = c.of_tenant(tenant)  # one tenant's rows at a time: no second copy of the whole run
        rejected = int(rs.rejected.sum()) / len(rs) if len(rs) else 0.0
        share = shares.get(tenant, NAN)
        flooding = None if math.isnan(share) else share > 1.0
        infl = (NAN, NAN, NAN, NAN)
        if reference is not None and len(rs):
            alone = reference.alone.get(tenant, [])
            infl = tenant_inflation(rs, alone, end_time, records_end_time(alone))
        if flooding:
            attainment = 1.0
        elif flooding is None or math.isnan(infl[2]):
            attainment = NAN
        else:
            attainment = (1.0 - rejected) * min(1.0, 1.0 / infl[2]) if infl[2] > 0 else 1.0 - rejected
        rows.append(TenantFairness(
            tenant, share, flooding, infl[0], infl[1], infl[2], infl[3], rejected, attainment,
            float(resource.gpu_s.get(tenant, 0.0)), float(resource.kv_block_s.get(tenant, 0.0)),
        ))
    present_rows = [t for t in rows if t.tenant in present]
    attain = [t.attainment for t in present_rows]
    latency_index = NAN if not attain or any(math.isnan(a) for a in attain) else jain_index(attain)
    user, _ = combine({"token": token.jain_mean, "latency": latency_index}, {"token": 0.5, "latency": 0.5})
    if math.isnan(latency_index):
        user = NAN  # U without its latency half would just be J_tok again
    num_flooding = sum(1 for t in present_rows if t.is_flooding)
    within = [t for t in present_rows if t.is_flooding is False]
    iso = NAN
    if num_flooding and within:
        values = [t.ttft_p90_inflation for t in within]
        iso = NAN if any(math.isnan(v) for v in values) else max(values)
    iso_index = NAN if math.isnan(iso) else (min(1.0, 1.0 / iso) if iso > 0 else 1.0)
    holistic, used = NAN, tuple[str, ...]()
    if not math.isnan(user):
        holistic, used = combine(
            {"user": user, "resource": resource.index_mean, "isolation": iso_index}, HOLISTIC_WEIGHTS)
    return HolisticFairness(
        token.jain_mean, latency_index, user, resource, iso, iso_index, holistic, used, capacity,
        num_flooding, len(within), reference is not None, tuple(rows),
    )
