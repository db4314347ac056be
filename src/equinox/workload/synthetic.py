"""Seeded workload generators: arrival processes, length distributions, tenant profiles.

Arrivals with a time-varying rate (ramps, diurnal cycles, hourly shapes) and a burstiness
CV use time rescaling: a unit-rate renewal process whose gaps are Gamma(1/cv^2, cv^2)
(cv = 1 is Poisson) is mapped through the inverse cumulative rate. All randomness comes
from the `numpy.random.Generator` passed in; same seed, same workload.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from equinox.errors import ConfigError
from equinox.request import RequestSpec
from equinox.workload.schema import Workload

# ---------------------------------------------------------------------------------------
# Rate shapes: rate(t, duration_s) in requests/s, vectorised over t.


class RateShape(Protocol):
    """A request rate over time (requests/s)."""

    def __call__(self, t: np.ndarray, duration_s: float) -> np.ndarray: ...

    def scaled(self, factor: float) -> RateShape: ...


@dataclass(frozen=True)
class ConstantRate:
    """A constant rate."""

    rate: float

    def __call__(self, t: np.ndarray, duration_s: float) -> np.ndarray:
        return np.full(np.shape(t), self.rate, dtype=float)

    def scaled(self, factor: float) -> ConstantRate:
        """The same shape with every rate multiplied by `factor`."""
        return ConstantRate(self.rate * factor)


@dataclass(frozen=True)
class LinearRamp:
    """A rate ramping linearly from `start_rate` to `end_rate` over the run."""

    start_rate: float
    end_rate: float

    def __call__(self, t: np.ndarray, duration_s: float) -> np.ndarray:
        return self.start_rate + (self.end_rate - self.start_rate) * np.asarray(t) / duration_s

    def scaled(self, factor: float) -> LinearRamp:
        """The same shape with every rate multiplied by `factor`."""
        return LinearRamp(self.start_rate * factor, self.end_rate * factor)


@dataclass(frozen=True)
class Diurnal:
    """mean * (1 + amplitude * sin(2 pi (t - phase_s) / period_s)); amplitude in [0, 1]."""

    mean_rate: float
    amplitude: float = 0.5
    period_s: float = 86400.0
    phase_s: float = 0.0

    def __call__(self, t: np.ndarray, duration_s: float) -> np.ndarray:
        x = 2 * math.pi * (np.asarray(t) - self.phase_s) / self.period_s
        return self.mean_rate * (1.0 + self.amplitude * np.sin(x))

    def scaled(self, factor: float) -> Diurnal:
        """The same shape with every rate multiplied by `factor`."""
        return Diurnal(self.mean_rate * factor, self.amplitude, self.period_s, self.phase_s)


@dataclass(frozen=True)
class Piecewise:
    """Equal-width segments with constant rates; `segment_s=None` spreads them over the run."""

    rates: tuple[float, ...]
    segment_s: float | None = None

    def __call__(self, t: np.ndarray, duration_s: float) -> np.ndarray:
        seg = self.segment_s or duration_s / len(self.rates)
        idx = np.clip((np.asarray(t) // seg).astype(int), 0, len(self.rates) - 1)
        return np.asarray(self.rates, dtype=float)[idx]

    def scaled(self, factor: float) -> Piecewise:
        """The same shape with every rate multiplied by `factor`."""
        return Piecewise(tuple(r * factor for r in self.rates), self.segment_s)


# ---------------------------------------------------------------------------------------
# Arrival processes.


MAX_ARRIVALS = 100_000_000  # one tenant's arrivals in one workload (a 1M-request run is already large)


def check_arrival_count(expected: float) -> float:
    """`expected` arrivals, or ConfigError when no run could hold them (absurd rate or duration)."""
    if not expected <= MAX_ARRIVALS:  # also catches inf and nan
        raise ConfigError(f"the workload would have about {expected:.3g} arrivals for one tenant (at most "
                          f"{MAX_ARRIVALS:,}); lower the rate scale or the duration")
    return expected


class ArrivalProcess(Protocol):
    """Sorted arrival times in [0, duration_s)."""

    def sample(self, rng: np.random.Generator, duration_s: float) -> np.ndarray: ...

    def scaled(self, factor: float) -> ArrivalProcess: ...


@dataclass(frozen=True)
class UniformArrivals:
    """Deterministic gaps 1/rate: floor(rate * duration) arrivals, the first at a random phase."""

    rate: float
    random_phase: bool = True

    def sample(self, rng: np.random.Generator, duration_s: float) -> np.ndarray:
        if self.rate <= 0:
            return np.empty(0)
        phase = rng.random() if self.random_phase else 0.0
        n = int(check_arrival_count(self.rate * duration_s))
        t = (phase + np.arange(n)) / self.rate
        return t[t < duration_s]

    def scaled(self, factor: float) -> UniformArrivals:
        """The same process at `factor` times the rate."""
        return UniformArrivals(self.rate * factor, self.random_phase)


@dataclass(frozen=True)
class RenewalArrivals:
    """Gamma-renewal arrivals (CV = `cv`; 1 is Poisson) following a rate shape."""

    shape: RateShape
    cv: float = 1.0
    grid_points: int = 20_000

    def __post_init__(self) -> None:
        if not (self.cv > 0 and math.isfinite(self.cv)):
            raise ConfigError(f"burstiness cv must be > 0, got {self.cv}")

    def sample(self, rng: np.random.Generator, duration_s: float) -> np.ndarray:
        grid = np.linspace(0.0, duration_s, self.grid_points + 1)
        mid = (grid[:-1] + grid[1:]) / 2
        rates = np.maximum(self.shape(mid, duration_s), 0.0)
        cum = np.concatenate([[0.0], np.cumsum(rates * np.diff(grid))])
        total = float(cum[-1])
        if total <= 0:
            return np.empty(0)
        k = 1.0 / (self.cv * self.cv)
        n = int(check_arrival_count(total) + 6 * math.sqrt(total) * self.cv + 16)
        ops = np.cumsum(rng.gamma(k, 1.0 / k, size=n))
        while ops[-1] < total:
            ops = np.concatenate([ops, ops[-1] + np.cumsum(rng.gamma(k, 1.0 / k, size=n))])
        ops = ops[ops < total]
        return np.interp(ops, cum, grid)

    def scaled(self, factor: float) -> RenewalArrivals:
        """The same process at `factor` times the rate."""
        return RenewalArrivals(self.shape.scaled(factor), self.cv, self.grid_points)


@dataclass(frozen=True)
class OnOff:
    """Arrivals of `inner` kept only in ON windows (ON first, then OFF, alternating)."""

    inner: ArrivalProcess
    on_s: float = 60.0
    off_s: float = 60.0

    def sample(self, rng: np.random.Generator, duration_s: float) -> np.ndarray:
        t = self.inner.sample(rng, duration_s)
        return t[np.mod(t, self.on_s + self.off_s) < self.on_s]

    def scaled(self, factor: float) -> OnOff:
        """The same process at `factor` times the rate."""
        return OnOff(self.inner.scaled(factor), self.on_s, self.off_s)


@dataclass(frozen=True)
class ActiveWindow:
    """A tenant that joins at `start_s` and leaves at `end_s` (None: stays to the end)."""

    inner: ArrivalProcess
    start_s: float = 0.0
    end_s: float | None = None

    def sample(self, rng: np.random.Generator, duration_s: float) -> np.ndarray:
        t = self.inner.sample(rng, duration_s)
        end = duration_s if self.end_s is None else self.end_s
        return t[(t >= self.start_s) & (t < end)]

    def scaled(self, factor: float) -> ActiveWindow:
        """The same process at `factor` times the rate."""
        return ActiveWindow(self.inner.scaled(factor), self.start_s, self.end_s)


def poisson(rate: float) -> RenewalArrivals:
    """Poisson arrivals at `rate` requests/s."""
    return RenewalArrivals(ConstantRate(rate), 1.0)


def gamma(rate: float, cv: float) -> RenewalArrivals:
    """Gamma-renewal arrivals at `rate` with inter-arrival coefficient of variation `cv`."""
    return RenewalArrivals(ConstantRate(rate), cv)


def ramp(start_rate: float, end_rate: float, cv: float = 1.0) -> RenewalArrivals:
    """Arrivals whose rate ramps linearly from `start_rate` to `end_rate` over the run."""
    return RenewalArrivals(LinearRamp(start_rate, end_rate), cv)


def diurnal(mean_rate: float, amplitude: float = 0.5, period_s: float = 86400.0, cv: float = 1.0) -> RenewalArrivals:
    """Arrivals following a sinusoidal daily cycle around `mean_rate`."""
    if not 0.0 <= amplitude <= 1.0:
        raise ConfigError(f"diurnal amplitude must be in [0, 1], got {amplitude}")
    return RenewalArrivals(Diurnal(mean_rate, amplitude, period_s), cv)


# ---------------------------------------------------------------------------------------
# Length distributions (all map a standard normal to lengths, so pairs can be correlated).


def _phi(z: np.ndarray) -> np.ndarray:
    erf = np.frompyfunc(math.erf, 1, 1)
    return np.asarray(0.5 * (1.0 + erf(np.asarray(z) / math.sqrt(2.0))), dtype=float)


class LengthDist(Protocol):
    """A token-length distribution."""

    def from_normal(self, z: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class Fixed:
    """Always `value` tokens."""

    value: int

    def from_normal(self, z: np.ndarray) -> np.ndarray:
        return np.full(np.shape(z), self.value, dtype=np.int64)


@dataclass(frozen=True)
class UniformInt:
    """Uniform integer lengths in [low, high]."""

    low: int
    high: int

    def from_normal(self, z: np.ndarray) -> np.ndarray:
        u = _phi(z)
        return np.minimum(self.low + (u * (self.high - self.low + 1)).astype(np.int64), self.high)


@dataclass(frozen=True)
class QuantileTable:
    """Inverse CDF interpolated linearly between quantiles (probs ascending from 0 to 1)."""

    probs: tuple[float, ...]
    values: tuple[float, ...]

    def __post_init__(self) -> None:
        p = np.asarray(self.probs)
        if len(p) < 2 or len(p) != len(self.values) or p[0] != 0.0 or p[-1] != 1.0 or np.any(np.diff(p) <= 0):
            raise ConfigError("a quantile table needs matching probs (0 ... 1, increasing) and values")
        if np.any(np.diff(np.asarray(self.values)) < 0):
            raise ConfigError("quantile table values must be non-decreasing")

    def from_normal(self, z: np.ndarray) -> np.ndarray:
        return np.rint(np.interp(_phi(z), self.probs, self.values)).astype(np.int64)


@dataclass(frozen=True)
class LogNormal:
    """Log-normal lengths with the given median and log-space sigma, clipped to [low, high]."""

    median: float
    sigma: float
    low: int = 1
    high: int | None = None

    def from_normal(self, z: np.ndarray) -> np.ndarray:
        x = np.rint(self.median * np.exp(self.sigma * np.asarray(z)))
        return np.clip(x, self.low, self.high if self.high is not None else np.inf).astype(np.int64)


@dataclass(frozen=True)
class Discrete:
    """An empirical distribution {value: probability}."""

    values: tuple[float, ...]
    probs: tuple[float, ...]

    def from_normal(self, z: np.ndarray) -> np.ndarray:
        cum = np.cumsum(np.asarray(self.probs, dtype=float))
        idx = np.minimum(np.searchsorted(cum / cum[-1], _phi(z), side="right"), len(cum) - 1)
        return np.rint(np.asarray(self.values)[idx]).astype(np.int64)


@dataclass(frozen=True)
class LengthModel:
    """Prompt and output length distributions, optionally correlated (Gaussian copula)."""

    prompt: LengthDist
    output: LengthDist
    correlation: float = 0.0

    def sample(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(prompt lengths, output lengths), each at least 1."""
        z = rng.standard_normal((n, 2))
        r = max(-0.999, min(0.999, self.correlation))
        z2 = r * z[:, 0] + math.sqrt(1.0 - r * r) * z[:, 1]
        return (np.maximum(self.prompt.from_normal(z[:, 0]), 1), np.maximum(self.output.from_normal(z2), 1))


def fixed_lengths(num_prompt_tokens: int, num_output_tokens: int) -> LengthModel:
    """Every request has the same prompt and output length."""
    return LengthModel(Fixed(num_prompt_tokens), Fixed(num_output_tokens))


# ---------------------------------------------------------------------------------------
# Tenants and generation.


@dataclass(frozen=True)
class TenantProfile:
    """One tenant of a synthetic workload: its arrivals, its lengths, its weight."""

    name: str
    arrivals: ArrivalProcess
    lengths: LengthModel
    weight: float | None = None


@dataclass(frozen=True)
class GeneratorConfig:
    """Everything `generate` needs besides the profiles."""

    duration_s: float
    seed: int = 0
    name: str = "synthetic"
    source: str = "synthetic generator"
    is_synthetic_tenants: bool = False
    tenant_assignment: str | None = None
    warnings: tuple[str, ...] = field(default=())


def generate(profiles: Sequence[TenantProfile], config: GeneratorConfig) -> Workload:
    """Sample every tenant (independent seeded streams) into one sorted Workload."""
    if not profiles:
        raise ConfigError("a synthetic workload needs at least one tenant")
    if len({p.name for p in profiles}) != len(profiles):
        raise ConfigError("tenant names must be unique")
    specs: list[RequestSpec] = []
    for i, prof in enumerate(profiles):
        rng = np.random.default_rng([config.seed, i])
        times = prof.arrivals.sample(rng, config.duration_s)
        n_in, n_out = prof.lengths.sample(rng, len(times))
        specs.extend(
            RequestSpec(f"{prof.name}-{k}", prof.name, float(times[k]), int(n_in[k]), int(n_out[k]),
                        max_tokens=int(n_out[k]))
            for k in range(len(times))
        )
    specs.sort(key=lambda s: (s.arrival_time, s.request_id))
    weights = {p.name: p.weight for p in profiles if p.weight is not None}
    return Workload(
        name=config.name,
        requests=tuple(specs),
        tenant_weights=weights,
        is_synthetic_tenants=config.is_synthetic_tenants,
        source=config.source,
        duration_s=config.duration_s,
        tenant_assignment=config.tenant_assignment,
        trace_format="synthetic",
        warnings=config.warnings,
    )


def zipf_rates(total_rate: float, num_tenants: int, s: float = 1.0) -> list[float]:
    """Per-tenant rates summing to `total_rate`, tenant k getting a share proportional to 1/k^s."""
    w = 1.0 / np.arange(1, num_tenants + 1, dtype=float) ** s
    return [float(x) for x in total_rate * w / w.sum()]


def heavy_hitter_rates(total_rate: float, num_tenants: int, heavy_share: float = 0.5) -> list[float]:
    """Tenant 1 sends `heavy_share` of the traffic; the others split the rest evenly."""
    if num_tenants < 2 or not 0 < heavy_share < 1:
        raise ConfigError("a heavy hitter needs >= 2 tenants and a share in (0, 1)")
    rest = total_rate * (1 - heavy_share) / (num_tenants - 1)
    return [total_rate * heavy_share] + [rest] * (num_tenants - 1)
