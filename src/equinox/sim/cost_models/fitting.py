"""Fitting routines behind tools/fit_cost_models.py and the error benchmark (needs numpy and scipy).

Not used by the simulator at run time; it turns ../shared/data into profiles/*.json entries.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Callable, Sequence
from typing import Any

from equinox.sim.cost_models.roofline import RooflineCostModel, RooflineParams
from equinox.sim.cost_models.sources import DeploymentId, Observation
from equinox.sim.hardware import make_deployment
from equinox.types import BatchShape

VIDUR_KNOTS = (
    1,
    8,
    16,
    32,
    48,
    64,
    96,
    128,
    192,
    256,
    384,
    512,
    768,
    1024,
    1536,
    2048,
    3072,
    4096,
    6144,
    8192,
    12288,
    16384,
    24576,
    32768,
)
OUTLIER_APE = 0.5  # a measured point this far from the first fit is treated as a measurement artefact


def ape_stats(pairs: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """(mean, max) absolute percentage error of (predicted, measured) pairs, in percent."""
    errors = [abs(p - m) / m * 100.0 for p, m in pairs if m > 0]
    if not errors:
        return float("nan"), float("nan")
    return statistics.fmean(errors), max(errors)


def model_errors(predict: Callable[[BatchShape], float], observations: Sequence[Observation]) -> tuple[float, float]:
    """(MAPE, max APE) in percent of `predict` against measured iterations."""
    return ape_stats([(predict(o.batch), o.measured_s) for o in observations])


def _nnls_relative(rows: list[list[float]], targets: list[float]) -> list[float]:
    """Non-negative least squares on relative error (each row divided by its target)."""
    import numpy as np
    from scipy.optimize import nnls

    a = np.array(rows, dtype=float)
    y = np.array(targets, dtype=float)
    coefs, _ = nnls(a / y[:, None], np.ones_like(y))
    return [float(c) for c in coefs]


# ---------------------------------------------------------------- all-reduce and roofline calibration


def fit_allreduce(points: Sequence[tuple[int, float]], workers: int) -> tuple[float, float]:
    """(latency_s, bus bandwidth bytes/s) of t = latency + 2 (w-1)/w * bytes / bandwidth."""
    factor = 2.0 * (workers - 1) / workers
    latency, per_byte = _nnls_relative([[1.0, factor * b] for b, _ in points], [t for _, t in points])
    return latency, (1.0 / per_byte if per_byte > 0 else float("inf"))


def _vidur_linear_error(params: RooflineParams, vidur: dict[DeploymentId, list[tuple[int, float]]]) -> float:
    per_dep = []
    for dep, points in vidur.items():
        model = RooflineCostModel(make_deployment(*dep), params)
        per_dep.append(ape_stats([(model.linear_time_s(n, include_comm=False), t) for n, t in points[::3]])[0])
    return statistics.fmean(per_dep)


def calibrate_roofline(
    vidur: dict[DeploymentId, list[tuple[int, float]]],
    allreduce: dict[tuple[str, int], list[tuple[int, float]]],
) -> tuple[RooflineParams, dict[str, Any]]:
    """Fit matmul/bandwidth efficiency and per-layer cost on Vidur's linear ops, link terms on its all-reduces.

    Attention efficiency, the per-iteration overhead and PCIe bandwidth have no measurement here and keep
    their documented defaults (Vidur's attention profiles are missing from the snapshot).
    """
    from equinox.sim.hardware import GPUS

    latencies, efficiencies = [], []
    for (gpu, workers), points in sorted(allreduce.items()):
        latency, bandwidth = fit_allreduce(points, workers)
        latencies.append(latency)
        efficiencies.append(min(1.0, bandwidth / GPUS.get(gpu).interconnect_bandwidth))
    params = RooflineParams()
    if latencies:
        params = dataclasses.replace(
            params,
            allreduce_latency_s=statistics.median(latencies),
            interconnect_efficiency=statistics.median(efficiencies),
        )
    grids = {
        "matmul_efficiency": [0.4 + 0.025 * i for i in range(21)],
        "bandwidth_efficiency": [0.5 + 0.025 * i for i in range(21)],
        "layer_overhead_s": [i * 5e-6 for i in range(21)],
    }
    best = _vidur_linear_error(params, vidur)
    for _ in range(3):  # coordinate descent; the objective is smooth and nearly separable
        for name, grid in grids.items():
            for value in grid:
                trial = dataclasses.replace(params, **{name: value})
                error = _vidur_linear_error(trial, vidur)
                if error < best:
                    best, params = error, trial
    return params, {"vidur_linear_mape_percent": round(best, 2), "allreduce_fits": len(latencies)}


# ---------------------------------------------------------------- Vidur tables


def _knot_value(points: Sequence[tuple[int, float]], knot: int) -> float | None:
    lo, hi = (knot, knot) if knot <= 8 else (0.9 * knot, 1.1 * knot)
    values = [t for n, t in points if lo <= n <= hi]
    return statistics.median(values) if values else None


def vidur_table(points: Sequence[tuple[int, float]], comm: Callable[[int], float]) -> tuple[list[int], list[float]]:
    """Knots of L(n) = Vidur linear ops (smoothed, monotone) + all-reduce time."""
    max_n = max(n for n, _ in points)
    xs: list[int] = []
    ys: list[float] = []
    for knot in VIDUR_KNOTS:
        if knot > max_n:
            break
        value = _knot_value(points, knot)
        if value is None:
            continue
        y = value + comm(knot)
        xs.append(knot)
        ys.append(max(y, ys[-1]) if ys else y)
    return xs, ys


def comm_from_fit(
    dep: DeploymentId, fit: tuple[float, float] | None, fallback: RooflineCostModel
) -> Callable[[int], float]:
    """Per-iteration all-reduce time: measured fit where Vidur has one, else the roofline's."""
    tp = dep[2]
    if tp <= 1:
        return lambda n: 0.0
    if fit is None:
        return fallback.comm_time_s
    latency, bandwidth = fit
    m = fallback.deployment.model
    factor = 2.0 * (tp - 1) / tp * m.hidden_size * m.dtype_bytes

    def comm(n: int) -> float:
        return 2 * m.num_layers * (latency + factor * n / bandwidth)

    return comm


# ---------------------------------------------------------------- end-to-end phase fits (Splitwise, VTC)


def _fit_decode(obs: Sequence[Observation]) -> list[float]:
    rows = [[1.0, o.batch.num_decode_seqs, o.batch.decode_context_tokens] for o in obs]
    return _nnls_relative(rows, [o.measured_s for o in obs])


def _fit_prefill(obs: Sequence[Observation], intercept: float | None) -> list[float]:
    """[a, b, c_pair, d, e] of t = a + b*T + c_pair*pairs + d*T^2 + e*seqs (relative error, all >= 0).

    The T^2 term captures the superlinear batch-token cost Splitwise measured; with a narrow token
    range (VTC) the intercept is tied to the decode one and a per-sequence term replaces T^2.
    """
    targets = [o.measured_s for o in obs]
    if intercept is None:
        rows = [
            [1.0, o.batch.num_prefill_tokens, o.batch.prefill_attention_pairs, o.batch.num_prefill_tokens**2]
            for o in obs
        ]
        a, b, c, d = _nnls_relative(rows, targets)
        return [a, b, c, d, 0.0]
    rows = [[o.batch.num_prefill_tokens, o.batch.prefill_attention_pairs, o.batch.num_prefill_seqs] for o in obs]
    import numpy as np
    from scipy.optimize import nnls

    y = np.array(targets, dtype=float)
    coefs, _ = nnls(np.array(rows, dtype=float) / y[:, None], 1.0 - intercept / y)
    b, c, e = (float(v) for v in coefs)
    return [intercept, b, c, 0.0, e]


def _entry_from_lines(decode: list[float], prefill: list[float], obs: Sequence[Observation]) -> dict[str, Any]:
    a_d, b_d, c_ctx = decode
    a_p, b_p, c_pair, d_p, c_seq = prefill
    max_bs = max(o.batch.num_decode_seqs for o in obs if o.phase == "decode")
    tokens = sorted(o.batch.num_prefill_tokens for o in obs if o.phase == "prefill")
    min_t, max_t = max(tokens[0], max_bs + 1), max(tokens[-1], 2 * tokens[0], max_bs + 2)
    # Prefill region sampled geometrically so the T^2 curve stays within ~1% between knots.
    num = 24 if d_p > 0 else 1
    prefill_xs = sorted({round(min_t * (max_t / min_t) ** (i / num)) for i in range(num + 1)})
    xs = [1, max_bs, *prefill_xs] if max_bs > 1 else [1, *prefill_xs]
    ys = [a_d + b_d * x for x in xs[: len(xs) - len(prefill_xs)]]
    ys += [a_p + b_p * x + d_p * x * x for x in prefill_xs]
    for i in range(1, len(ys)):  # monotone: a bigger batch never runs faster
        ys[i] = max(ys[i], ys[i - 1])
    return {
        "linear_tokens": xs,
        "linear_s": ys,
        "overhead_s": 0.0,
        "prefill_pair_s": c_pair,
        "decode_context_s": c_ctx,
        "prefill_seq_s": c_seq,
    }


def _table(entry: dict[str, Any]) -> Any:
    from equinox.sim.cost_models.fitted import TableCostModel
    from equinox.sim.cost_models.piecewise import PiecewiseLinear

    return TableCostModel(
        "fit",
        make_deployment("a100-80gb", "llama-2-7b"),
        PiecewiseLinear(entry["linear_tokens"], entry["linear_s"]),
        overhead_s=0.0,
        pair_s=entry["prefill_pair_s"],
        ctx_s=entry["decode_context_s"],
        seq_s=entry["prefill_seq_s"],
    )


def _fit_once(kept: Sequence[Observation]) -> tuple[dict[str, Any], float]:
    dec = [o for o in kept if o.phase == "decode"]
    pre = [o for o in kept if o.phase == "prefill"]
    decode = _fit_decode(dec)
    tokens = [o.batch.num_prefill_tokens for o in pre]
    narrow = max(tokens) < 4 * min(tokens)
    entry = _entry_from_lines(decode, _fit_prefill(pre, decode[0] if narrow else None), kept)
    model = _table(entry)
    worst = max(abs(model.iteration_time(o.batch) - o.measured_s) / o.measured_s for o in kept)
    return entry, worst


def fit_phase_entry(observations: Sequence[Observation]) -> tuple[dict[str, Any], list[Observation]]:
    """Fit decode (a + b*bs + c*ctx) and prefill lines into one table entry, dropping artefacts.

    Returns the entry and the points dropped as artefacts. While some point is off by more than
    OUTLIER_APE, drop the one point whose removal best fits the rest (leave-one-out, robust to the
    relative-error fit being dragged by the artefact itself, e.g. Splitwise's TP2 64x512 prompt
    measured at 1/8 of its neighbours' time).
    """
    kept = list(observations)
    entry, worst = _fit_once(kept)
    dropped: list[Observation] = []
    while worst > OUTLIER_APE and len(kept) > 8:
        trials = [(*_fit_once(kept[:i] + kept[i + 1 :]), i) for i in range(len(kept))]
        entry, worst, index = min(trials, key=lambda t: t[1])
        dropped.append(kept.pop(index))
    return entry, dropped


def artefact_id(o: Observation) -> list[int | str]:
    """How a profile records a dropped point: [phase, tokens, sequences, context]."""
    b = o.batch
    return [o.phase, b.num_prefill_tokens, b.num_prefill_seqs + b.num_decode_seqs, b.decode_context_tokens]


def without_artefacts(observations: Sequence[Observation], entry: dict[str, Any]) -> list[Observation]:
    """`observations` minus the points the fit recorded as artefacts."""
    bad = {tuple(x) for x in entry.get("fit", {}).get("dropped_artefacts", [])}
    return [o for o in observations if tuple(artefact_id(o)) not in bad]


def holdout_split(observations: Sequence[Observation], every: int = 5) -> tuple[list[Observation], list[Observation]]:
    """Deterministic split: every `every`-th observation of each phase is held out."""
    train: list[Observation] = []
    test: list[Observation] = []
    for phase in ("prefill", "decode"):
        for i, o in enumerate(o for o in observations if o.phase == phase):
            (test if i % every == every - 1 else train).append(o)
    return train, test
