"""Fairness metrics: VTC's service difference and Jain's index among backlogged tenants.

Service of a tenant = (w_p * prompt tokens computed + w_q * output tokens generated)
divided by the tenant's weight; requested service counts the requests that arrived
(prompt plus requested output). Both are taken per interval from the run's time
series and summed over sliding 60 s windows that start after a 30 s warm-up and end
before the last arrival (VTC, OSDI'24, section 5). Per window:

    service difference = sum_j min(s_max - s_j, |r_j - s_j|)     (rates, tokens/s)
    Jain's index       = (sum x_j)^2 / (n * sum x_j^2)  over tenants backlogged in the window

A tenant is backlogged in a window when one of its requests waited (arrived and not
yet admitted) during it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from equinox.metrics.collector import RequestRecord, TimeSeries


@dataclass(frozen=True)
class FairnessSummary:
    """Service difference (max, mean, variance over windows) and Jain's index (mean, min)."""

    num_windows: int
    service_diff_max: float
    service_diff_mean: float
    service_diff_var: float
    jain_mean: float
    jain_min: float
    window_starts: tuple[float, ...] = ()
    service_diff: tuple[float, ...] = ()

    def as_dict(self) -> dict[str, float]:
        """Scalars for JSON (the per-window series are written separately)."""
        return {
            "num_windows": self.num_windows,
            "service_diff_max": self.service_diff_max,
            "service_diff_mean": self.service_diff_mean,
            "service_diff_var": self.service_diff_var,
            "jain_mean": self.jain_mean,
            "jain_min": self.jain_min,
        }


@dataclass(frozen=True)
class ServiceMatrix:
    """Per-tenant, per-interval weighted service and demand (rows follow `tenants`)."""

    tenants: tuple[str, ...]
    interval_s: float
    service: np.ndarray
    demand: np.ndarray
    waiting: np.ndarray


def service_matrix(
    records: Sequence[RequestRecord],
    series: TimeSeries,
    weights: Mapping[str, float],
    prompt_weight: float = 1.0,
    output_weight: float = 2.0,
) -> ServiceMatrix:
    """Build weighted service, demand and waiting-count matrices from a run."""
    tenants = tuple(dict.fromkeys([r.tenant for r in records] + list(series.service)))
    index = {t: i for i, t in enumerate(tenants)}
    dt = series.interval_s
    end_time = max(
        [len(series) * dt] + [r.arrival_time for r in records] + [r.finish_time or 0.0 for r in records]
    )
    n_int = int(end_time / dt) + 2
    service = np.zeros((len(tenants), n_int))
    demand = np.zeros((len(tenants), n_int))
    waiting_diff = np.zeros((len(tenants), n_int + 1))
    for tenant, per in series.service.items():
        row = index[tenant]
        for i, (p, o) in per.items():
            service[row, i] += prompt_weight * p + output_weight * o
    for r in records:
        row = index[r.tenant]
        a = int(r.arrival_time / dt)
        demand[row, a] += prompt_weight * r.num_prompt_tokens + output_weight * r.num_requested_tokens
        if r.reject_reason is not None:
            continue
        left = r.first_scheduled_time if r.first_scheduled_time is not None else end_time
        waiting_diff[row, a] += 1
        waiting_diff[row, int(left / dt) + 1] -= 1
    w = np.array([float(weights.get(t, 1.0)) for t in tenants])[:, None]
    waiting = np.cumsum(waiting_diff, axis=1)[:, :n_int]
    return ServiceMatrix(tenants, dt, service / w, demand / w, waiting)


def fairness(
    matrix: ServiceMatrix, end_time: float, window_s: float = 60.0, warmup_s: float = 30.0
) -> FairnessSummary:
    """Service difference and Jain's index over sliding windows in [warmup, end_time]."""
    dt = matrix.interval_s
    width = max(1, round(window_s / dt))
    first = int(math.ceil(warmup_s / dt))
    last = int(end_time / dt) - width  # last window start (inclusive)
    nan = math.nan
    if last < first or len(matrix.tenants) == 0:
        return FairnessSummary(0, nan, nan, nan, nan, nan)

    def windowed(m: np.ndarray) -> np.ndarray:
        c = np.concatenate([np.zeros((m.shape[0], 1)), np.cumsum(m, axis=1)], axis=1)
        return c[:, first + width : last + width + 1] - c[:, first : last + 1]

    s = windowed(matrix.service) / window_s
    r = windowed(matrix.demand) / window_s
    busy = windowed((matrix.waiting > 0).astype(float)) > 0
    s_max = s.max(axis=0, keepdims=True)
    diff = np.minimum(s_max - s, np.abs(r - s)).sum(axis=0)
    jains = []
    for j in range(s.shape[1]):
        x = s[busy[:, j], j]
        if len(x) >= 2 and float((x * x).sum()) > 0:
            jains.append(float(x.sum() ** 2 / (len(x) * (x * x).sum())))
    starts = tuple(float((first + k) * dt) for k in range(s.shape[1]))
    return FairnessSummary(
        s.shape[1],
        float(diff.max()),
        float(diff.mean()),
        float(diff.var()),
        float(np.mean(jains)) if jains else nan,
        float(np.min(jains)) if jains else nan,
        starts,
        tuple(float(d) for d in diff),
    )


def jain_index(values: Sequence[float]) -> float:
    """Jain's fairness index of non-negative values (1 = equal, 1/n = one takes all)."""
    xs = [float(v) for v in values]
    sq = sum(v * v for v in xs)
    if not xs or sq == 0:
        return math.nan
    return sum(xs) ** 2 / (len(xs) * sq)
