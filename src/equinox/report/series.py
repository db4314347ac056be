"""Time series and headline numbers derived from a loaded run (numpy only; no plotting here)."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np

from equinox.report.load import RunData, floats

SMOOTH_S = 10.0  # service-rate window, seconds (VTC's figures smooth over a short window too)


@dataclass(frozen=True)
class TenantSeries:
    """One value per metrics interval for each tenant."""

    times: np.ndarray
    values: dict[str, np.ndarray]


def _index(times: list[float], interval_s: float) -> np.ndarray:
    return np.rint(np.asarray(times) / interval_s).astype(int)


def service(run: RunData) -> TenantSeries | None:
    """Weighted service per tenant per interval (tokens, divided by the tenant's weight)."""
    cols = run.service
    if not cols or not cols.get("time"):
        return None
    dt = run.interval_s
    idx = _index(floats(cols["time"]), dt)
    n = int(idx.max()) + 1 if len(idx) else 0
    n = max(n, len(run.steps.get("time", [])))
    values: dict[str, np.ndarray] = {}
    svc = floats(cols["weighted_service"])
    for i, tenant, v in zip(idx, cols["tenant"], svc, strict=True):
        arr = values.get(tenant)
        if arr is None:
            arr = values[tenant] = np.zeros(n)
        if not math.isnan(v):
            arr[i] += v
    return TenantSeries(np.arange(n) * dt, dict(sorted(values.items())))


def service_rate(run: RunData, window_s: float = SMOOTH_S) -> TenantSeries | None:
    """Weighted service rate per tenant (tokens/s), a centred moving average over `window_s`."""
    s = service(run)
    if s is None:
        return None
    k = max(1, round(window_s / run.interval_s))
    kernel = np.ones(k) / (k * run.interval_s)
    return TenantSeries(s.times, {t: np.convolve(v, kernel, mode="same") for t, v in s.values.items()})


def accumulated_service_difference(run: RunData) -> TenantSeries | None:
    """Each tenant's accumulated weighted service minus the mean over tenants (VTC's accumulated difference)."""
    s = service(run)
    if s is None or not s.values:
        return None
    cum = {t: np.cumsum(v) for t, v in s.values.items()}
    mean = np.mean(np.stack(list(cum.values())), axis=0)
    return TenantSeries(s.times, {t: c - mean for t, c in cum.items()})


def ttft_points(run: RunData) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per tenant: arrival times and TTFTs of requests that produced a first token."""
    cols = run.requests
    if not cols:
        return {}
    arrival = floats(cols["arrival_time"])
    ttft = floats(cols["ttft_s"])
    acc: dict[str, tuple[list[float], list[float]]] = defaultdict(lambda: ([], []))
    for tenant, a, t in zip(cols["tenant"], arrival, ttft, strict=True):
        if not math.isnan(t):
            acc[tenant][0].append(a)
            acc[tenant][1].append(t)
    return {t: (np.asarray(a), np.asarray(v)) for t, (a, v) in sorted(acc.items())}


def counters(run: RunData) -> dict[str, TenantSeries]:
    """Fairness counters over time: kind (vtc, ufc, rfc, hf, ...) -> per-tenant series (NaN where unsampled)."""
    cols = run.counters
    if not cols or not cols.get("time"):
        return {}
    dt = run.interval_s
    idx = _index(floats(cols["time"]), dt)
    n = int(idx.max()) + 1
    out: dict[str, dict[str, np.ndarray]] = defaultdict(dict)
    for i, kind, tenant, v in zip(idx, cols["kind"], cols["tenant"], floats(cols["value"]), strict=True):
        arr = out[kind].get(tenant)
        if arr is None:
            arr = out[kind][tenant] = np.full(n, np.nan)
        arr[i] = v
    times = np.arange(n) * dt
    return {k: TenantSeries(times, dict(sorted(v.items()))) for k, v in sorted(out.items())}


def _col(run: RunData, name: str) -> np.ndarray | None:
    values = run.steps.get(name)
    return None if values is None else np.asarray(floats(values))


def utilisation(run: RunData) -> dict[str, np.ndarray] | None:
    """Per interval: time, GPU busy fraction, model-FLOPs utilisation and KV-cache use (absent keys: unknown)."""
    if not run.steps:
        return None
    dt = run.interval_s
    busy = _col(run, "busy_s")
    times = _col(run, "time")
    assert busy is not None and times is not None  # required columns, checked at load
    out = {"time": times, "busy": busy / dt}
    dep = run.config.get("deployment") if isinstance(run.config.get("deployment"), dict) else {}
    flops = _col(run, "flops")
    peak = dep.get("peak_flops") if dep else None
    if flops is not None and isinstance(peak, (int, float)) and peak > 0 and np.nansum(flops) > 0:
        out["mfu"] = flops / (dt * peak)
    kv = _col(run, "kv_block_s")
    engine = run.config.get("engine") if isinstance(run.config.get("engine"), dict) else {}
    blocks = engine.get("num_kv_blocks") if engine else None
    if kv is not None and isinstance(blocks, (int, float)) and blocks > 0:
        out["kv"] = kv / (dt * blocks)
    return out


def batching(run: RunData) -> dict[str, np.ndarray] | None:
    """Per interval: mean sequences and tokens per iteration, mean token budget and sequence cap."""
    steps = _col(run, "num_steps")
    if steps is None:
        return None
    times = _col(run, "time")
    assert times is not None
    out = {"time": times}
    with np.errstate(invalid="ignore", divide="ignore"):
        for name, col in (("seqs", "num_seqs"), ("tokens", "num_tokens"), ("budget", "token_budget"),
                          ("seq_cap", "max_num_seqs"), ("waiting", "num_waiting")):
            values = _col(run, col)
            if values is not None:
                out[name] = values if name == "waiting" else np.where(steps > 0, values / steps, np.nan)
    return out


def _get(d: Any, *keys: str) -> float:
    for k in keys:
        if not isinstance(d, dict):
            return math.nan
        d = d.get(k)
    return float(d) if isinstance(d, (int, float)) and not isinstance(d, bool) else math.nan


HEADLINE = (
    ("tok_s", "tok/s", ("throughput", "tokens_per_s")),
    ("req_s", "req/s", ("throughput", "requests_per_s")),
    ("ttft_mean", "TTFT mean s", ("latency", "ttft", "mean")),
    ("ttft_p90", "TTFT p90 s", ("latency", "ttft", "p90")),
    ("tpot_mean", "TPOT mean s", ("latency", "tpot", "mean")),
    ("e2e_mean", "E2E mean s", ("latency", "e2e", "mean")),
    ("sd_max", "svc diff max", ("fairness", "service_diff_max")),
    ("sd_mean", "svc diff mean", ("fairness", "service_diff_mean")),
    ("jain", "Jain", ("fairness", "jain_mean")),
    ("user", "user idx", ("holistic", "user_index")),
    ("resource", "resource idx", ("holistic", "resource_index")),
    ("iso_infl", "isolation infl", ("holistic", "isolation_inflation")),
    ("holistic", "holistic idx", ("holistic", "holistic_index")),
    ("busy", "GPU busy", ("utilisation", "busy_fraction")),
    ("mfu", "MFU", ("utilisation", "mfu")),
    ("kv", "KV use", ("utilisation", "kv_utilisation")),
    ("preempt", "preempt", ("num_preemptions",)),
    ("finished", "finished", ("throughput", "num_finished")),
    ("rejected", "rejected", ("throughput", "num_rejected")),
    ("unfinished", "unfinished", ("throughput", "num_unfinished")),
)


def headline(run: RunData) -> dict[str, float]:
    """The run's headline numbers from summary.json (NaN where unknown)."""
    return {key: _get(run.summary, *path) for key, _, path in HEADLINE}


HOLISTIC_KEYS = ("user", "resource", "iso_infl", "holistic")


def holistic_columns(summary: dict[str, Any]) -> dict[str, float]:
    """The fairness indices of a summary.json document (NaN where absent: live runs, older runs)."""
    return {key: _get(summary, *path) for key, _, path in HEADLINE if key in HOLISTIC_KEYS}


def offered_load(run: RunData) -> float:
    """Offered requests per second (workload requests / workload duration), NaN when unknown."""
    wl = run.config.get("workload")
    n = _get(wl, "num_requests")
    d = _get(wl, "duration_s")
    return n / d if d and d > 0 else math.nan


def tenant_rows(run: RunData) -> list[dict[str, Any]]:
    """Per-tenant numbers from summary.json."""
    rows = []
    for t in run.summary.get("tenants", []) if isinstance(run.summary.get("tenants"), list) else []:
        if not isinstance(t, dict):
            continue
        rows.append({
            "tenant": t.get("tenant", "?"), "weight": _get(t, "weight"), "requests": _get(t, "num_requests"),
            "finished": _get(t, "num_finished"), "service": _get(t, "service"),
            "ttft_mean": _get(t, "latency", "ttft", "mean"), "ttft_p90": _get(t, "latency", "ttft", "p90"),
            "tpot_mean": _get(t, "latency", "tpot", "mean"), "e2e_mean": _get(t, "latency", "e2e", "mean"),
            **_tenant_fairness(run.summary, str(t.get("tenant", "?"))),
        })
    return rows


def _tenant_fairness(summary: dict[str, Any], tenant: str) -> dict[str, Any]:
    """A tenant's side of the fairness metrics from summary.json's `holistic.tenants` (NaN when absent)."""
    keys = ("load_share", "latency_inflation", "ttft_p90_inflation", "gpu_s", "kv_block_s")
    holistic = summary.get("holistic")
    rows = holistic.get("tenants") if isinstance(holistic, dict) else None
    for row in rows if isinstance(rows, list) else []:
        if isinstance(row, dict) and row.get("tenant") == tenant:
            out: dict[str, Any] = {k: _get(row, k) for k in keys}
            flooding = row.get("is_flooding")
            out["flooding"] = None if flooding is None else ("yes" if flooding else "no")
            return out
    return {**{k: math.nan for k in keys}, "flooding": None}
