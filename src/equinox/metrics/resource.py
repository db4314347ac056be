"""Resource-side fairness: each tenant's GPU time and KV-memory time against its max-min fair share.

The collector apportions every iteration to the tenants in it with the platform's cost
constants (the Resource Fairness Counter's model, docs/algorithm.md "Fairness metrics",
M4); here the per-interval GPU-seconds and KV block-seconds are summed over VTC's
windows, turned into dominant shares (Dominant Resource Fairness, Ghodsi et al.,
NSDI'11) and compared with the weighted max-min fair share by Jain's index.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from equinox.metrics.collector import TimeSeries
from equinox.metrics.fairness import WINDOW_BLOCK, active_groups, cumsum0
from equinox.scheduling.interface import Platform


@dataclass(frozen=True)
class ResourceFairness:
    """Jain's index of dominant shares relative to fair shares (mean and min over windows), per-tenant totals."""

    num_windows: int
    index_mean: float
    index_min: float
    gpu_s: Mapping[str, float]  # GPU-seconds apportioned to each tenant over the run
    kv_block_s: Mapping[str, float]  # KV block-seconds held by each tenant over the run

    @classmethod
    def unavailable(cls) -> ResourceFairness:
        """No per-iteration usage (live runs) or no window."""
        return cls(0, math.nan, math.nan, {}, {})

    def as_dict(self) -> dict[str, Any]:
        """Scalars for JSON (per-tenant totals are written with the tenants)."""
        return {"num_windows": self.num_windows, "index_mean": self.index_mean, "index_min": self.index_min}


def deployment_platform(deployment: Any) -> Platform:
    """Cost constants of a simulated deployment (model size, GPU peak FLOP/s and HBM bandwidth)."""
    model = deployment.model
    return Platform.from_model(
        deployment.name, num_matmul_params=model.num_matmul_params, kv_bytes_per_token=model.kv_bytes_per_token,
        weight_bytes=model.weight_bytes, peak_flops=deployment.peak_flops,
        hbm_bandwidth=deployment.gpu.hbm_bandwidth * deployment.tensor_parallel, source="deployment datasheet",
    )


def weighted_water_fill(total: float, demand: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted max-min fair split of `total`: tenant i gets min(demand_i, level * w_i), the level filling `total`."""
    n = len(demand)
    fair = np.zeros(n)
    if n == 0 or total <= 0:
        return fair
    order = np.argsort(demand / weights, kind="stable")
    remaining = total
    weight_left = float(weights.sum())
    for k, i in enumerate(order):
        level = remaining / weight_left
        if demand[i] <= level * weights[i]:
            fair[i] = demand[i]
            remaining -= float(demand[i])
            weight_left -= float(weights[i])
            continue
        rest = order[k:]
        fair[rest] = level * weights[rest]
        break
    return fair


def _jain_block(share: np.ndarray, waiting: np.ndarray, w: np.ndarray) -> list[float]:
    """Jain's index of d_i / f_i of each window (a column of `share`, tenants x windows) with two tenants active.

    The windows are taken together, grouped by their number of active tenants, with the
    same floats as a loop over windows (see fairness._jain_block).
    """
    active = (share > 0) | waiting
    values = np.zeros(share.shape[1])
    has = np.zeros(share.shape[1], dtype=bool)
    for k, cols, mask in active_groups(active):
        got = share[:, cols].T[mask].reshape(-1, k)
        demand = np.where(waiting[:, cols].T[mask].reshape(-1, k), np.inf, got)
        weights = np.broadcast_to(w, (len(cols), len(w)))[mask].reshape(-1, k)
        fair = weighted_water_fill_rows(got.sum(axis=1), demand, weights)
        x = got / np.where(fair > 0, fair, 1.0)
        sq, xs = (x * x).sum(axis=1), x.sum(axis=1)
        for row, col in enumerate(cols.tolist()):
            sq_row = float(sq[row])
            if sq_row > 0:
                values[col] = float(xs[row] ** 2 / (k * sq_row))
                has[col] = True
    return values[has].tolist()


def weighted_water_fill_rows(total: np.ndarray, demand: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """`weighted_water_fill(total[r], demand[r], weights[r])` of every row r at once, the same floats."""
    m, n = demand.shape
    fair = np.zeros((m, n))
    if n == 0:
        return fair
    order = np.argsort(demand / weights, axis=1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(n)[None, :].repeat(m, axis=0), axis=1)
    remaining = np.array(total, dtype=np.float64)
    weight_left = weights.sum(axis=1)
    live = total > 0
    rows = np.arange(m)
    with np.errstate(divide="ignore", invalid="ignore"):  # rows already done may divide by a spent weight
        for k in range(n):
            if not live.any():
                break
            i = order[:, k]
            level = remaining / weight_left
            d, wi = demand[rows, i], weights[rows, i]
            take = live & (d <= level * wi)
            fair[rows[take], i[take]] = d[take]
            remaining[take] -= d[take]
            weight_left[take] -= wi[take]
            stop = live & ~take  # this one and every later one get the level
            rest = stop[:, None] & (rank >= k)
            fair[rest] = (level[:, None] * weights)[rest]
            live &= take
    return fair


def _dense(cells: Mapping[str, Mapping[int, Sequence[float]]], tenants: Sequence[str], n: int,
           column: int) -> np.ndarray:
    out = np.zeros((len(tenants), n))
    for row, tenant in enumerate(tenants):
        per = cells.get(tenant, {})
        index = np.fromiter(per, dtype=np.int64, count=len(per))
        values = np.fromiter((cell[column] for cell in per.values()), dtype=np.float64, count=len(per))
        keep = index < n
        out[row, index[keep]] += values[keep]  # each interval once: 0.0 + value, as the cell-by-cell loop added
    return out


def resource_fairness(
    series: TimeSeries,
    tenants: Sequence[str],
    queued: np.ndarray | None,
    weights: Mapping[str, float],
    end_time: float,
    window_s: float = 60.0,
    warmup_s: float = 30.0,
) -> ResourceFairness:
    """Per window: Jain of d_i / f_i, d_i the dominant share (GPU time or KV time), f_i its weighted fair share.

    `queued[row, i]` > 0 means tenant `tenants[row]` had requests waiting at the end of
    interval i (the service matrix's); such a tenant wants more than it got.
    """
    cells = series.resource
    gpu_total = {t: sum(c[0] for c in per.values()) for t, per in cells.items()}
    kv_total = {t: sum(c[1] for c in per.values()) for t, per in cells.items()}
    dt = series.interval_s
    width = max(1, round(window_s / dt))
    first = math.ceil(warmup_s / dt)
    last = int(end_time / dt) - width
    if not cells or last < first or len(tenants) < 2 or queued is None:
        return ResourceFairness(0, math.nan, math.nan, gpu_total, kv_total)
    n = max(queued.shape[1], last + width + 1)

    window = width * dt
    c_gpu = cumsum0(_dense(cells, tenants, n, 0))
    c_kv = cumsum0(_dense(cells, tenants, n, 1)) if series.num_kv_blocks else None
    if queued.shape[1] < n:
        # The run stopped (`until`) before the arrivals ended: what was queued at its last
        # interval stays queued (edge padding), instead of indexing past the recorded columns.
        queued = np.pad(queued, ((0, 0), (0, n - queued.shape[1])), mode="edge") if queued.shape[1] else \
            np.zeros((queued.shape[0], n))
    w = np.array([float(weights.get(t, 1.0)) for t in tenants])
    values = []
    for lo in range(first, last + 1, WINDOW_BLOCK):  # blocks of windows: temporaries of tenants x block
        hi = min(last + 1, lo + WINDOW_BLOCK)
        share = (c_gpu[:, lo + width: hi + width] - c_gpu[:, lo: hi]) / window
        if c_kv is not None:
            share = np.maximum(share, (c_kv[:, lo + width: hi + width] - c_kv[:, lo: hi])
                               / (window * series.num_kv_blocks))
        waiting = queued[:, lo + width - 1: hi + width - 1] > 0
        values.extend(_jain_block(share, waiting, w))
    if not values:
        return ResourceFairness(0, math.nan, math.nan, gpu_total, kv_total)
    return ResourceFairness(len(values), float(np.mean(values)), float(np.min(values)), gpu_total, kv_total)
