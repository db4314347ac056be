"""Engine fidelity: the same figures from a measured run and from its simulated replay.

Measured rows carry arrival, first-token and finish times only, so every figure here is
defined from those three instants per request, for measured and simulated rows alike:

- throughput: (prompt + output) tokens of all requests / the time of the last finish
  (the artifact's client clock starts at 0, the arrival of the trace's time origin);
- TTFT: first token - arrival (mean, p90, and the mean per client);
- service curve of a client (for VTC's service difference): a request's prompt counts
  `w_p * prompt` at its first token, its output `w_q * output` spread evenly from the
  first token to the finish; requested service `w_p * prompt + w_q * output` counts at
  arrival; a request is queued from arrival to its first token. Both are divided by the
  client's weight and binned per second, then `equinox.metrics.fairness.fairness` takes
  the max over 60 s windows after 30 s warm-up, ending at the last arrival, as for every
  simulated run.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from equinox.metrics.fairness import ServiceMatrix, fairness


@dataclass(frozen=True, slots=True)
class Row:
    """One finished request: who, when it arrived, its first token and its finish."""

    tenant: str
    arrival_time: float
    first_token_time: float
    finish_time: float
    num_prompt_tokens: int
    num_output_tokens: int


@dataclass(frozen=True)
class Figures:
    """The compared figures of one run."""

    num_requests: int
    throughput_tokens_per_s: float
    mean_ttft_s: float
    p90_ttft_s: float
    client_mean_ttft_s: Mapping[str, float]
    service_diff_max: float


def figures(
    rows: Sequence[Row], weights: Mapping[str, float], *, arrival_end_time: float,
    prompt_weight: float = 1.0, output_weight: float = 2.0, window_s: float = 60.0, warmup_s: float = 30.0,
) -> Figures:
    """Throughput, TTFT and max service difference of `rows` (see the module docstring)."""
    if not rows:
        raise ValueError("no rows to summarise")
    ttft = np.array([r.first_token_time - r.arrival_time for r in rows])
    end = max(r.finish_time for r in rows)
    tokens = sum(r.num_prompt_tokens + r.num_output_tokens for r in rows)
    per_client: dict[str, list[float]] = {}
    for r, t in zip(rows, ttft, strict=True):
        per_client.setdefault(r.tenant, []).append(float(t))
    matrix = row_service_matrix(rows, weights, prompt_weight=prompt_weight, output_weight=output_weight)
    fair = fairness(matrix, arrival_end_time, window_s=window_s, warmup_s=warmup_s)
    return Figures(
        len(rows), tokens / end if end > 0 else math.nan, float(ttft.mean()), float(np.percentile(ttft, 90)),
        {c: float(np.mean(v)) for c, v in per_client.items()}, fair.service_diff_max,
    )


def row_service_matrix(
    rows: Sequence[Row], weights: Mapping[str, float], *, interval_s: float = 1.0,
    prompt_weight: float = 1.0, output_weight: float = 2.0,
) -> ServiceMatrix:
    """Per-client, per-interval service, demand and queued demand from request instants alone."""
    tenants = tuple(dict.fromkeys(r.tenant for r in rows))
    index = {t: i for i, t in enumerate(tenants)}
    dt = interval_s
    n = int(max(r.finish_time for r in rows) / dt) + 2
    service = np.zeros((len(tenants), n))
    demand = np.zeros((len(tenants), n))
    waiting = np.zeros((len(tenants), n))
    queued_diff = np.zeros((len(tenants), n + 1))
    for r in rows:
        k = index[r.tenant]
        requested = prompt_weight * r.num_prompt_tokens + output_weight * r.num_output_tokens
        demand[k, int(r.arrival_time / dt)] += requested
        service[k, int(r.first_token_time / dt)] += prompt_weight * r.num_prompt_tokens
        _spread(service[k], r.first_token_time, r.finish_time, output_weight * r.num_output_tokens, dt)
        _spread(waiting[k], r.arrival_time, r.first_token_time, r.first_token_time - r.arrival_time, dt)
        queued_diff[k, int(r.arrival_time / dt)] += requested
        queued_diff[k, min(n, int(r.first_token_time / dt))] -= requested
    w = np.array([float(weights.get(t, 1.0)) for t in tenants])[:, None]
    queued = np.maximum(np.cumsum(queued_diff, axis=1)[:, :n], 0.0)
    return ServiceMatrix(tenants, dt, service / w, demand / w, np.minimum(waiting, dt), queued / w)


def _spread(row: np.ndarray, start: float, end: float, amount: float, dt: float) -> None:
    """Add `amount` to `row`, spread evenly over [start, end) (all at `start` when end <= start)."""
    i = int(start / dt)
    if end <= start:
        row[i] += amount
        return
    j = int(end / dt)
    rate = amount / (end - start)
    if i == j:
        row[i] += amount
        return
    row[i] += rate * ((i + 1) * dt - start)
    row[j] += rate * (end - j * dt)
    if j > i + 1:
        row[i + 1 : j] += rate * dt


@dataclass(frozen=True)
class Comparison:
    """Simulated against measured figures of one run (relative errors, sim / measured - 1)."""

    measured: Figures
    simulated: Figures

    @property
    def throughput_error(self) -> float:
        """Relative throughput error."""
        return _rel(self.simulated.throughput_tokens_per_s, self.measured.throughput_tokens_per_s)

    @property
    def mean_ttft_error(self) -> float:
        """Relative mean-TTFT error."""
        return _rel(self.simulated.mean_ttft_s, self.measured.mean_ttft_s)

    @property
    def p90_ttft_error(self) -> float:
        """Relative p90-TTFT error."""
        return _rel(self.simulated.p90_ttft_s, self.measured.p90_ttft_s)

    @property
    def client_ttft_errors(self) -> dict[str, float]:
        """Relative mean-TTFT error per client."""
        sim = self.simulated.client_mean_ttft_s
        return {c: _rel(sim.get(c, math.nan), m) for c, m in self.measured.client_mean_ttft_s.items()}

    @property
    def service_diff_error(self) -> float:
        """Relative error of VTC's max service difference."""
        return _rel(self.simulated.service_diff_max, self.measured.service_diff_max)


def _rel(value: float, reference: float) -> float:
    if not (math.isfinite(value) and math.isfinite(reference)) or reference == 0:
        return math.nan
    return value / reference - 1.0
