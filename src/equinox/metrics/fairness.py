"""Fairness metrics: VTC's service difference and Jain's index among backlogged tenants.

Service of a tenant = (w_p * prompt tokens computed + w_q * output tokens generated)
divided by the tenant's weight; requested service counts the requests that arrived
(prompt plus requested output). Both are taken per interval from the run's time
series and summed over sliding 60 s windows that start after a 30 s warm-up and end
before the last arrival (VTC, OSDI'24, section 5). Per window:

    service difference = sum_j min(s_max - s_j, |r_j - s_j|)     (rates, tokens/s)
    Jain's index       = (sum x_j)^2 / (n * sum x_j^2),  x_j = s_j / f_j

over the n tenants active in the window (served, or with requests queued), where f_j
is the tenant's weighted max-min fair share of the service delivered in the window.
A tenant's demand is what it got plus the requested service of its requests still
queued at the end of the window (spread over the window): a tenant with nothing
queued got all it wanted; the total is water-filled over these demands. Among
tenants that all stay backlogged this is Jain's index of their weighted service; it
does not penalise a tenant that simply asked for less.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from equinox.metrics.collector import RequestRecord, TimeSeries
from equinox.metrics.records import Columns, RecordColumns, as_columns


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
    # seconds per interval with at least one request waiting (capped at the interval); None when not
    # computed (`service_matrix(with_waiting=False)`: `fairness` reads it only where `queued` is None)
    waiting: np.ndarray | None
    queued: np.ndarray | None = None  # weighted requested service of requests waiting at each interval's end


def service_matrix(
    records: Sequence[RequestRecord] | RecordColumns | Columns,
    series: TimeSeries,
    weights: Mapping[str, float],
    prompt_weight: float = 1.0,
    output_weight: float = 2.0,
    *,
    with_waiting: bool = True,
) -> ServiceMatrix:
    """Build weighted service, demand and waiting-count matrices from a run (`with_waiting=False`:
    no waiting matrix, two tenant x interval temporaries fewer; the summary does not read it).

    Per-request additions go through `np.add.at` in the records' order (the order a loop
    over the records would add them), so every cell is the same float as that loop's.
    The requests are taken in blocks of `REQUEST_BLOCK` and the matrices finished in
    place, so temporaries stay small on a run of millions of requests (issue 13).
    """
    c = as_columns(records)
    tenants = tuple(dict.fromkeys(c.present_tenants() + list(series.service)))
    index = {t: i for i, t in enumerate(tenants)}
    dt = series.interval_s
    end_time = max([len(series) * dt] + ([float(c.arrival.max()), max(0.0, float(np.nanmax(c.finish, initial=0.0)))]
                                         if len(c) else []))
    n_int = int(end_time / dt) + 2
    service = np.zeros((len(tenants), n_int))
    demand = np.zeros((len(tenants), n_int))
    shape = (len(tenants), n_int + 1) if with_waiting else (0, 0)
    waiting_diff = np.zeros(shape)
    waiting_part = np.zeros(shape)
    queued_diff = np.zeros((len(tenants), n_int + 1))
    for tenant, per in series.service.items():  # each interval once: 0.0 + its service, as a cell loop adds
        cells = np.fromiter(per, dtype=np.int64, count=len(per))
        p = np.fromiter((c[0] for c in per.values()), dtype=np.float64, count=len(per))
        o = np.fromiter((c[1] for c in per.values()), dtype=np.float64, count=len(per))
        service[index[tenant], cells] += prompt_weight * p + output_weight * o
    if len(c):
        row_of = np.array([index.get(t, -1) for t in c.tenant_names], dtype=np.int64)
        for lo in range(0, len(c), REQUEST_BLOCK):
            sl = slice(lo, lo + REQUEST_BLOCK)
            rows = row_of[c.tenant[sl]]
            a = (c.arrival[sl] / dt).astype(np.int64)
            asked = prompt_weight * c.num_prompt[sl] + output_weight * c.num_requested[sl]
            np.add.at(demand, (rows, a), asked)
            kept = ~c.rejected[sl]
            rows, a, asked, start = rows[kept], a[kept], asked[kept], c.arrival[sl][kept]
            left = c.scheduled[sl][kept]
            left = np.where(np.isnan(left), end_time, left)
            # Whole intervals waited are counted +1/-1 in `waiting_diff`: integers, exact in any order.
            if with_waiting:
                _add_waiting(waiting_diff, waiting_part, rows, start, left, dt)
            # Waiting at the end of intervals a .. int(left / dt) - 1.
            gone = np.minimum(n_int, (left / dt).astype(np.int64))
            _add_in_order(queued_diff, rows, a, asked, rows, gone, -asked, np.ones(len(rows), bool))
    w = np.array([float(weights.get(t, 1.0)) for t in tenants])[:, None]
    service /= w
    demand /= w
    waiting: np.ndarray | None = None
    if with_waiting:
        waiting = np.cumsum(waiting_diff[:, :n_int], axis=1)
        del waiting_diff
        waiting *= dt
        waiting += waiting_part[:, :n_int]
        del waiting_part
        np.minimum(waiting, dt, out=waiting)
    queued = np.cumsum(queued_diff[:, :n_int], axis=1)
    del queued_diff
    np.maximum(queued, 0.0, out=queued)
    queued /= w
    return ServiceMatrix(tenants, dt, service, demand, waiting, queued)


REQUEST_BLOCK = 1 << 16  # requests per block in `service_matrix`
WINDOW_BLOCK = 4096  # windows per block in `fairness` and `resource_fairness`


def cumsum0(m: np.ndarray) -> np.ndarray:
    """Cumulative sums along each row, with a leading zero column (window sums are differences of these)."""
    out = np.zeros((m.shape[0], m.shape[1] + 1))
    np.cumsum(m, axis=1, out=out[:, 1:])
    return out


def _add_in_order(m: np.ndarray, rows1: np.ndarray, cols1: np.ndarray, vals1: np.ndarray, rows2: np.ndarray,
                  cols2: np.ndarray, vals2: np.ndarray, has2: np.ndarray) -> None:
    """m[rows1[k], cols1[k]] += vals1[k], then (where has2[k]) m[rows2[k], cols2[k]] += vals2[k], for k in order.

    In slices of 2**16 requests, so the temporary index arrays stay small on a million-request run.
    """
    step = 1 << 16
    for lo in range(0, len(rows1), step):
        sl = slice(lo, lo + step)
        two = has2[sl]
        n = len(two)
        keys = np.concatenate([2 * np.arange(n), 2 * np.arange(n)[two] + 1])
        order = np.argsort(keys, kind="stable")
        r = np.concatenate([rows1[sl], rows2[sl][two]])[order]
        k = np.concatenate([cols1[sl], cols2[sl][two]])[order]
        v = np.concatenate([vals1[sl], vals2[sl][two]])[order]
        np.add.at(m, (r, k), v)


def _add_waiting(diff: np.ndarray, part: np.ndarray, rows: np.ndarray, start: np.ndarray, end: np.ndarray,
                 dt: float) -> None:
    """Add each interval [start, end) to its tenant's waiting time: whole intervals via a diff array."""
    ok = end > start
    rows, start, end = rows[ok], start[ok], end[ok]
    i, j = (start / dt).astype(np.int64), (end / dt).astype(np.int64)
    same = i == j
    first = np.where(same, end - start, (i + 1).astype(np.float64) * dt - start)
    last = end - j.astype(np.float64) * dt
    _add_in_order(part, rows, i, first, rows, j, last, ~same)
    whole = j > i + 1
    np.add.at(diff, (rows[whole], i[whole] + 1), 1.0)
    np.add.at(diff, (rows[whole], j[whole]), -1.0)


def fairness(
    matrix: ServiceMatrix, end_time: float, window_s: float = 60.0, warmup_s: float = 30.0
) -> FairnessSummary:
    """Service difference and Jain's index over sliding windows in [warmup, end_time]."""
    dt = matrix.interval_s
    width = max(1, round(window_s / dt))
    first = math.ceil(warmup_s / dt)
    last = int(end_time / dt) - width  # last window start (inclusive)
    # A run can end before the arrival span does (a served-alone reference run whose tenant stopped
    # sending early): windows past the recorded intervals are dropped, not read out of bounds.
    last = min(last, matrix.service.shape[1] - width)
    nan = math.nan
    if last < first or len(matrix.tenants) == 0:
        return FairnessSummary(0, nan, nan, nan, nan, nan)

    cs, cr = cumsum0(matrix.service), cumsum0(matrix.demand)
    cw = None
    if matrix.queued is None:
        if matrix.waiting is None:
            raise ValueError("fairness: a service matrix needs its queued or its waiting matrix")
        cw = cumsum0(matrix.waiting)
    num_windows = last - first + 1
    diffs = []
    jains = []
    for lo in range(first, last + 1, WINDOW_BLOCK):  # blocks of windows: temporaries of tenants x block
        hi = min(last + 1, lo + WINDOW_BLOCK)
        s = (cs[:, lo + width: hi + width] - cs[:, lo: hi]) / window_s
        r = (cr[:, lo + width: hi + width] - cr[:, lo: hi]) / window_s
        if cw is None:  # requested service still queued when each window ends, as a rate
            assert matrix.queued is not None
            queued = matrix.queued[:, lo + width - 1: hi + width - 1] / window_s
        else:
            queued = np.where(cw[:, lo + width: hi + width] - cw[:, lo: hi] >= 0.5 * window_s, np.inf, 0.0)
        s_max = s.max(axis=0, keepdims=True)
        diffs.append(np.minimum(s_max - s, np.abs(r - s)).sum(axis=0))
        jains.extend(_jain_block(s, queued))
    diff = np.concatenate(diffs)
    assert len(diff) == num_windows
    starts = tuple(float((first + k) * dt) for k in range(num_windows))
    return FairnessSummary(
        num_windows,
        float(diff.max()),
        float(diff.mean()),
        float(diff.var()),
        float(np.mean(jains)) if jains else nan,
        float(np.min(jains)) if jains else nan,
        starts,
        tuple(float(d) for d in diff),
    )


def _jain_block(s: np.ndarray, queued: np.ndarray) -> list[float]:
    """Jain's index of each window (a column of `s`, tenants x windows) with two tenants active or more.

    The windows are taken together, grouped by their number of active tenants, and give
    the same floats as a loop over windows would: a row sum of a compacted (windows x k)
    array is the sum numpy gives for each window's k values alone, and the water-fill
    does the same operations in the same order (`water_fill_rows`).
    """
    active = (s > 0) | (queued > 0)
    values = np.zeros(s.shape[1])
    has = np.zeros(s.shape[1], dtype=bool)
    for k, cols, mask in active_groups(active):
        served = s[:, cols].T[mask].reshape(-1, k)
        total = served.sum(axis=1)
        fair = water_fill_rows(total, served + queued[:, cols].T[mask].reshape(-1, k))
        x = served / np.where(fair > 0, fair, 1.0)
        sq, xs = (x * x).sum(axis=1), x.sum(axis=1)
        for row, col in enumerate(cols.tolist()):
            if float(sq[row]) > 0:
                values[col] = float(xs[row] ** 2 / (k * sq[row]))
                has[col] = True
    return values[has].tolist()


def active_groups(active: np.ndarray) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Windows (columns of `active`, tenants x windows) by their number k >= 2 of active tenants.

    Yields k, the windows' column indices (ascending) and their masks (windows x tenants).
    """
    counts = active.sum(axis=0)
    for k in np.unique(counts).tolist():
        if k >= 2:
            cols = np.flatnonzero(counts == k)
            yield k, cols, active[:, cols].T


def row_sums(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per row, the sum of its values where `mask` holds, as numpy sums them alone (0.0 where none)."""
    counts = mask.sum(axis=1)
    out = np.zeros(len(values))
    for c in np.unique(counts).tolist():
        if c:
            rows = counts == c
            out[rows] = values[rows][mask[rows]].reshape(-1, c).sum(axis=1)
    return out


def water_fill_rows(total: np.ndarray, demand: np.ndarray) -> np.ndarray:
    """`water_fill(total[r], demand[r])` of every row r at once, the same floats."""
    fair = np.zeros(demand.shape)
    remaining = np.array(total, dtype=np.float64)
    floor = 1e-12 * np.maximum(1.0, total)
    open_ = np.ones(demand.shape, dtype=bool)
    live = np.ones(len(demand), dtype=bool)
    while True:
        live &= open_.any(axis=1) & (remaining > floor)
        if not live.any():
            return fair
        level = remaining / np.maximum(open_.sum(axis=1), 1)
        capped = open_ & (demand <= level[:, None]) & live[:, None]
        stuck = live & ~capped.any(axis=1)  # nobody under the level: the open ones get it, and the row is done
        fill = open_ & stuck[:, None]
        fair[fill] = np.broadcast_to(level[:, None], fair.shape)[fill]
        live &= ~stuck
        fair[capped] = demand[capped]
        remaining -= row_sums(demand, capped)
        open_ &= ~capped


def max_min_fair(served: np.ndarray, unsatisfied: np.ndarray) -> np.ndarray:
    """Water-fill the total of `served`: satisfied tenants want what they got, unsatisfied want more."""
    return water_fill(float(served.sum()), np.where(unsatisfied, np.inf, served))


def water_fill(total: float, demand: np.ndarray) -> np.ndarray:
    """Max-min fair split of `total` among `demand`s (each gets min(demand, level))."""
    fair = np.zeros(len(demand))
    remaining = total
    open_ = np.ones(len(demand), dtype=bool)
    while open_.any() and remaining > 1e-12 * max(1.0, total):
        level = remaining / int(open_.sum())
        capped = open_ & (demand <= level)
        if not capped.any():
            fair[open_] = level
            break
        fair[capped] = demand[capped]
        remaining -= float(demand[capped].sum())
        open_ &= ~capped
    return fair


def jain_index(values: Sequence[float]) -> float:
    """Jain's fairness index of non-negative values (1 = equal, 1/n = one takes all)."""
    xs = [float(v) for v in values]
    sq = sum(v * v for v in xs)
    if not xs or sq == 0:
        return math.nan
    return sum(xs) ** 2 / (len(xs) * sq)
